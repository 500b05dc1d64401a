from django.urls import path

from pipelines_ui.api import notification_pages

urlpatterns = [
    path(
        "pipelines/<int:pk>/notifications/",
        notification_pages.pipeline_notifications,
        name="pipeline_notifications",
    ),
    path(
        "notifications/<int:notification_id>/enabled/",
        notification_pages.notification_enabled,
        name="notification_enabled",
    ),
    path(
        "notifications/<int:notification_id>/delete/",
        notification_pages.notification_delete,
        name="notification_delete",
    ),
    path(
        "deliveries/<int:delivery_id>/send-again/",
        notification_pages.delivery_send_again,
        name="delivery_send_again",
    ),
]
