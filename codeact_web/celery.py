import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codeact_web.settings")

app = Celery("codeact_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
