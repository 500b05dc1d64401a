"""First-run setup for `make run`: a first admin user, a team, the example pipelines."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from pipelines_ui.first_login import first_login_remember
from pipelines_ui.models import Membership, Pipeline, Role, Team
from pipelines_ui.services import pipeline_import
from stepwise.spec import SpecError


class Command(BaseCommand):
    help = "Create the first admin user (STEPWISE_ADMIN_USER / STEPWISE_ADMIN_PASSWORD) and import the examples."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--examples", default=str(settings.BASE_DIR / "examples"))

    def handle(self, *args, examples: str, **options) -> None:
        users = get_user_model().objects
        username = os.environ.get("STEPWISE_ADMIN_USER", "admin")
        admin = users.filter(username=username).first()
        if admin is None:
            password = os.environ.get("STEPWISE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            admin = users.create_superuser(username=username, email="", password=password)
            shown = "(from STEPWISE_ADMIN_PASSWORD)" if os.environ.get("STEPWISE_ADMIN_PASSWORD") else password
            self.stdout.write(self.style.SUCCESS(f"Created the first user: {username} / {shown}  (shown once)"))
            if not os.environ.get("STEPWISE_ADMIN_PASSWORD"):
                # `serve` shows it again after its address, where it is not lost among install output.
                first_login_remember(username=username, password=password)
        team, _ = Team.objects.get_or_create(name="Default")
        Membership.objects.get_or_create(team=team, user=admin, defaults={"role": Role.ADMIN})

        for pipeline_file in sorted(Path(examples).glob("*/pipeline.yml")):
            name = pipeline_file.parent.name
            if Pipeline.objects.filter(team=team, name=name).exists():
                continue
            try:
                version = pipeline_import(team=team, path=pipeline_file, user=admin, name=name)
            except SpecError as exc:
                self.stderr.write(f"example {name} not imported:\n{exc}")
                continue
            self.stdout.write(f"imported example pipeline {version.pipeline.name}")
