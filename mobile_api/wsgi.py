"""`app` for gunicorn: `gunicorn -c infra/gunicorn.conf.py mobile_api.wsgi:app`."""

from mobile_api import create_app

app = create_app()
