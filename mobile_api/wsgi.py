"""`app` for gunicorn: `gunicorn -c infra/gunicorn.conf.py mobile_api.wsgi:app`.

`create_app` configures logging (backend.logs.configure_logging), as for every process.
"""

from mobile_api import create_app

app = create_app()
