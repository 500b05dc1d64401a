from django.urls import path

from pipelines_ui.api import schedule_pages

urlpatterns = [
    path("schedules/", schedule_pages.schedule_list, name="schedule_list"),
    path("schedules/<int:schedule_id>/", schedule_pages.schedule_detail, name="schedule_detail"),
    path("schedules/<int:schedule_id>/enabled/", schedule_pages.schedule_enabled, name="schedule_enabled"),
    path("schedules/<int:schedule_id>/delete/", schedule_pages.schedule_delete, name="schedule_delete"),
    path("pipelines/<int:pk>/schedules/", schedule_pages.pipeline_schedules, name="pipeline_schedules"),
]
