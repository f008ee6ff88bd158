from partner_portal.celery import app
from partner_portal.incidents.tasks import sync_all_tenants
from tests.waiting import wait_until


def test_the_celery_app_uses_json_and_late_acks():
    assert app.conf.task_serializer == "json"
    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_a_real_worker_runs_a_task_sent_through_redis(start_worker):
    worker = start_worker(concurrency=1)
    result = sync_all_tenants.delay()
    wait_until(lambda: f"{result.id}] succeeded" in worker.output, what="task to succeed")
