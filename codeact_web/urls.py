from django.contrib import admin
from django.urls import include, path

from chat import views
from codeact_web import health, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("review/", include("review.urls")),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ReadinessView.as_view(), name="health-ready"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("chat.urls")),
]

# A request that cannot get a database connection in time is answered 503, not 500.
handler500 = "codeact_web.database.server_error"
