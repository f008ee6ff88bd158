"""What `manage.py demo` runs besides Django: a process supervisor and devcloud's control API.
Plain Python, not an app (no models, no URLs)."""
