from django.urls import path

from runs import data_views, datastore_views
from runs.urls import NameConverter  # noqa: F401 - registers the `name` converter

urlpatterns = [
    path("data/", data_views.data_list, name="data_list"),
    path("data/new/", data_views.data_upload, name="data_upload"),
    path("data/uploads/", data_views.data_upload_start, name="data_upload_start"),
    path("data/uploads/<str:upload_id>/", data_views.data_upload_chunk, name="data_upload_chunk"),
    path("data/<int:asset_id>/", data_views.data_detail, name="data_detail"),
    path("data/<int:asset_id>/versions/<name:version>/file/", data_views.data_file, name="data_file"),
    path("data/<int:asset_id>/versions/<name:version>/download/", data_views.data_download, name="data_download"),
    path("data/<int:asset_id>/versions/<name:version>/archive/", data_views.data_archive_view, name="data_archive"),
    path("datastores/", datastore_views.datastore_list, name="datastore_list"),
    path("datastores/new/", datastore_views.datastore_create, name="datastore_create"),
    path("datastores/<int:datastore_id>/", datastore_views.datastore_detail, name="datastore_detail"),
    path("datastores/<int:datastore_id>/register/", datastore_views.datastore_register, name="datastore_register"),
    path(
        "runs/<int:run_id>/steps/<name:step_name>/outputs/<name:output_name>/register/",
        data_views.register_step_output,
        name="step_output_register",
    ),
]
