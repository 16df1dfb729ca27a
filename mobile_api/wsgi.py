"""`app` for gunicorn: `gunicorn -c infra/gunicorn.conf.py mobile_api.wsgi:app`."""

from backend.logs import configure_logging
from mobile_api import create_app

configure_logging()
app = create_app()
