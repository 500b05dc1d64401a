from django.db import migrations


def create_default_target(apps, schema_editor):
    ComputeTarget = apps.get_model("runs", "ComputeTarget")
    ComputeTarget.objects.get_or_create(
        name="local",
        defaults={
            "aliases": ["cpu-cluster"],
            "queue": "stepwise-local",
            "description": "This machine's workers (started by `make run`).",
            "is_default": True,
        },
    )


class Migration(migrations.Migration):
    dependencies = [("runs", "0001_initial")]
    operations = [migrations.RunPython(create_default_target, migrations.RunPython.noop)]
