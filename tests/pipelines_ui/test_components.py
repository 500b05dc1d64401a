"""The component library: registration's rules, what azureml: references resolve to, the pages, export.

Personas: alice administers the team, bob edits in it, vera views it, charlie is elsewhere.
"""

from __future__ import annotations

import io
import textwrap
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from pipelines_ui import component_selectors as cs
from pipelines_ui import components, services
from pipelines_ui.components import ComponentRoleError
from pipelines_ui.models import Component, Membership, Pipeline, Role, Team, Visibility
from pipelines_ui.uploads import UploadError, extract_zip
from stepwise.spec import ComponentLookupError, Distribution, SpecError, load_pipeline, to_zip_bytes
from tests.api.conftest import bearer, token_for
from tests.conftest import make_user

TRAIN = """\
    type: command
    name: train
    version: 1
    display_name: Train a model
    inputs:
      lr: {type: number, default: 0.1}
      data: {type: uri_folder}
    outputs:
      model: {type: uri_folder}
    code: ./src
    environment: azureml:sklearn:1
    command: python train.py --lr ${{inputs.lr}} --data ${{inputs.data}} --model ${{outputs.model}}
"""

USES_LATEST = """\
    type: pipeline
    jobs:
      fit:
        component: azureml:train@latest
        inputs:
          data: {type: uri_folder, path: ./data}
"""


def write_component(folder: Path, text: str = TRAIN, code: str = "print('train')\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "train.py").write_text(code)
    (folder / "train.yml").write_text(textwrap.dedent(text))
    return folder / "train.yml"


def write_pipeline(folder: Path, text: str = USES_LATEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "rows.csv").write_text("a,b\n1,2\n")
    (folder / "pipeline.yml").write_text(textwrap.dedent(text))
    return folder / "pipeline.yml"


def register(team, user, path, **kwargs) -> components.Registered:
    return components.component_register_file(team=team, path=path, user=user, **kwargs)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def vera(team):
    return make_user("vera", team, Role.VIEWER)


# ---- registration ------------------------------------------------------------------------


def test_a_component_file_registers_with_its_code(db, team, alice, tmp_path):
    done = register(team, alice, write_component(tmp_path))
    c = done.component
    assert done.created and (c.team, c.name, c.version, c.display_name) == (team, "train", "1", "Train a model")
    assert c.spec["command"].startswith("python train.py") and "code" not in c.spec
    assert c.spec["inputs"]["lr"] == {"type": "number", "default": 0.1}
    assert cs.component_code(c) == {"train.py": b"print('train')\n"}
    assert c.created_by == alice and c.visibility == Visibility.TEAM


def test_the_same_content_again_is_a_no_op_that_says_so(db, team, alice, tmp_path):
    first = register(team, alice, write_component(tmp_path))
    again = register(team, alice, write_component(tmp_path))
    assert not again.created and again.component.pk == first.component.pk
    assert "already registered" in again.message and "nothing changed" in again.message
    assert Component.objects.count() == 1


def test_other_content_under_a_taken_version_is_refused(db, team, alice, tmp_path):
    register(team, alice, write_component(tmp_path))
    changed = write_component(tmp_path, code="print('changed')\n")
    with pytest.raises(components.ComponentError, match="'train' version '1' is already registered"):
        register(team, alice, changed)
    assert Component.objects.count() == 1


def test_without_a_version_the_next_number_is_taken(db, team, alice, tmp_path):
    path = write_component(tmp_path, TRAIN.replace("    version: 1\n", ""))
    assert register(team, alice, path).component.version == "1"
    assert not register(team, alice, path).created  # unchanged: still 1
    write_component(tmp_path, TRAIN.replace("    version: 1\n", ""), code="print(2)\n")
    assert register(team, alice, path).component.version == "2"
    assert register(team, alice, path, name="train2").component.version == "1"


def test_a_bad_file_names_the_field_and_saves_nothing(db, team, alice, tmp_path):
    path = write_component(tmp_path, TRAIN.replace("type: number", "type: nmber"))
    with pytest.raises(SpecError) as caught:
        register(team, alice, path)
    assert "inputs.lr.type" in [p.field for p in caught.value.problems if p.severity == "error"]
    assert not Component.objects.exists()


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [("1abc", "", "invalid component name"), ("a:b", "", "invalid component name"), ("ok", "x/y", "invalid version")],
)
def test_names_and_versions_that_a_reference_could_not_spell_are_refused(
    db, team, alice, tmp_path, name, version, message
):
    with pytest.raises(components.ComponentError, match=message):
        register(team, alice, write_component(tmp_path), name=name, version=version)


def test_an_uploaded_zip_carries_the_code_and_a_lone_yml_cannot(db, team, alice, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("train/train.yml", textwrap.dedent(TRAIN))
        zf.writestr("train/src/train.py", "print('zipped')\n")
    upload = SimpleUploadedFile("train.zip", buffer.getvalue())
    done = components.component_register_upload(team=team, uploaded=upload, user=alice)
    assert cs.component_code(done.component) == {"train.py": b"print('zipped')\n"}

    lone = SimpleUploadedFile("train.yml", textwrap.dedent(TRAIN).replace("version: 1", "version: 2").encode())
    with pytest.raises(SpecError) as caught:
        components.component_register_upload(team=team, uploaded=lone, user=alice)
    (problem,) = [p for p in caught.value.problems if p.severity == "error"]
    assert problem.field == "code" and problem.file == "train.yml"  # a name inside the upload, no server path

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../train.yml", "type: command\ncommand: echo\n")
    with pytest.raises(UploadError, match="'..' is not allowed"):
        components.component_register_upload(
            team=team, uploaded=SimpleUploadedFile("x.zip", evil.getvalue()), user=alice
        )
    assert Component.objects.count() == 1


def test_a_step_of_a_pipeline_registers_without_its_bindings(db, pipeline, alice):
    done = components.component_register_step(
        team=pipeline.team, version=pipeline.latest_version, step_name="train", user=alice
    )
    c = done.component
    assert (c.name, c.version, c.display_name) == ("train", "1", "Train model")
    assert set(c.spec["inputs"]) == {"data", "epochs"} and set(c.spec["outputs"]) == {"model"}
    assert cs.component_code(c) == {"train.py": b"print('train')\n"}
    with pytest.raises(components.ComponentError, match="no step 'nope'"):
        components.component_register_step(
            team=pipeline.team, version=pipeline.latest_version, step_name="nope", user=alice
        )


# ---- resolution --------------------------------------------------------------------------


def test_unknown_names_and_versions_are_named(db, team, alice, tmp_path):
    with pytest.raises(ComponentLookupError) as caught:
        cs.component_resolve(team=team, name="train", version=None)
    assert str(caught.value) == "component 'train' is not registered (team Data Science)"
    register(team, alice, write_component(tmp_path))
    register(team, alice, write_component(tmp_path, TRAIN.replace("version: 1", "version: 2")))
    with pytest.raises(ComponentLookupError) as caught:
        cs.component_resolve(team=team, name="train", version="3")
    assert str(caught.value) == "component 'train' has no version '3' (versions: 1, 2)"


def test_latest_is_the_most_recently_registered(db, team, alice, tmp_path):
    register(team, alice, write_component(tmp_path, TRAIN.replace("version: 1", "version: 10")))
    register(team, alice, write_component(tmp_path, TRAIN.replace("version: 1", "version: 9")))
    assert cs.component_resolve(team=team, name="train", version=None).version == "9"
    assert cs.component_resolve(team=team, name="train", version="10").version == "10"


def test_the_teams_own_component_comes_before_shared_ones(db, team, other_team, alice, charlie, tmp_path):
    register(other_team, charlie, write_component(tmp_path / "o"), visibility=Visibility.INSTANCE)
    assert cs.component_resolve(team=team, name="train", version="1").team == other_team
    register(team, alice, write_component(tmp_path / "t", code="print('mine')\n"))
    assert cs.component_resolve(team=team, name="train", version=None).team == team
    # A name the team has is resolved in the team only.
    with pytest.raises(ComponentLookupError, match="has no version '2'"):
        cs.component_resolve(team=team, name="train", version="2")


def test_a_team_only_component_of_another_team_is_not_found(db, team, other_team, charlie, tmp_path):
    register(other_team, charlie, write_component(tmp_path))
    with pytest.raises(ComponentLookupError, match="not registered"):
        cs.component_resolve(team=team, name="train", version="1")


def test_only_a_team_s_admins_share_a_component_with_every_team(db, team, bob, alice, client, tmp_path):
    # An editor could publish the team's command and code to the whole instance.
    with pytest.raises(ComponentRoleError, match="needs the admin role"):
        register(team, bob, write_component(tmp_path / "b"), visibility=Visibility.INSTANCE)
    assert not Component.objects.exists()
    client.force_login(bob)
    folder = io.BytesIO()
    with zipfile.ZipFile(folder, "w") as zf:
        for path in (tmp_path / "b").rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(tmp_path / "b").as_posix())

    def upload():
        return SimpleUploadedFile("train.zip", folder.getvalue())

    form = {"team": team.pk, "file": upload(), "name": "", "version": "", "visibility": "instance"}
    response = client.post(reverse("component_register"), form)
    assert response.status_code == 400 and "needs the admin role" in response.content.decode()
    api = bearer(token_for(bob, "write"))
    posted = api.post("/api/v1/components/", {"team": team.name, "file": upload(), "visibility": "instance"})
    assert posted.status_code == 403 and not Component.objects.exists()
    admin_write = bearer(token_for(alice, "write"))  # the admin scope too, as for the team's other sharing
    posted = admin_write.post("/api/v1/components/", {"team": team.name, "file": upload(), "visibility": "instance"})
    assert posted.status_code == 403 and "'admin' scope" in posted.json()["detail"]
    register(team, bob, write_component(tmp_path / "t"), visibility=Visibility.TEAM)  # within the team: fine
    register(team, alice, write_component(tmp_path / "a"), version="2", visibility=Visibility.INSTANCE)


def test_several_teams_sharing_a_name_is_an_error_naming_them(db, team, other_team, charlie, tmp_path):
    third = Team.objects.create(name="Third")
    Membership.objects.create(team=third, user=charlie, role=Role.ADMIN)  # sharing widely is an admin's
    register(other_team, charlie, write_component(tmp_path / "o"), visibility=Visibility.INSTANCE)
    register(third, charlie, write_component(tmp_path / "t"), visibility=Visibility.INSTANCE)
    with pytest.raises(ComponentLookupError) as caught:
        cs.component_resolve(team=team, name="train", version="1")
    assert "several teams (Elsewhere, Third)" in str(caught.value)


def test_an_import_resolves_registered_components_and_fails_clearly_before(db, team, alice, compute, tmp_path):
    path = write_pipeline(tmp_path / "p")
    with pytest.raises(SpecError) as caught:
        services.pipeline_import(team=team, path=path, user=alice)
    messages = [p.message for p in caught.value.problems if p.field == "component"]
    assert messages == ["component 'train' is not registered (team Data Science)"]
    assert not Pipeline.objects.exists()

    register(team, alice, write_component(tmp_path / "c"))
    version = services.pipeline_import(team=team, path=path, user=alice)
    spec = services.version_spec_with_files(version)
    fit = spec.jobs["fit"]
    assert (fit.component_name, fit.component_version) == ("train", "1")
    assert fit.command.startswith("python train.py") and spec.files["code/fit/train.py"] == b"print('train')\n"


def test_an_export_carries_the_component_inline_and_imports_where_it_is_not_registered(
    db, team, alice, compute, tmp_path
):
    register(team, alice, write_component(tmp_path / "c"))
    version = services.pipeline_import(team=team, path=write_pipeline(tmp_path / "p"), user=alice)
    extract_zip(io.BytesIO(to_zip_bytes(services.version_spec_with_files(version))), tmp_path / "export")
    component_yaml = (tmp_path / "export" / "components" / "fit.yml").read_text()
    assert "azureml:train" not in (tmp_path / "export" / "pipeline.yml").read_text()
    assert "name: train" in component_yaml and "command: python train.py" in component_yaml

    fresh = Team.objects.create(name="Fresh")
    Component.objects.all().delete()
    spec, _warnings = load_pipeline(tmp_path / "export" / "pipeline.yml")  # no resolver at all
    assert spec.jobs["fit"].command.startswith("python train.py")
    again = services.pipeline_import(team=fresh, path=tmp_path / "export" / "pipeline.yml", user=alice)
    assert again.content_hash == version.content_hash


# ---- pages ---------------------------------------------------------------------------------


def test_the_empty_list_says_how_to_register(db, team, alice):
    response = client_for(alice).get(reverse("component_list"))
    assert response.status_code == 200
    assert b"pipelines component register train.yml --team" in response.content
    assert b'id="empty-state"' in response.content


def test_the_list_shows_names_latest_versions_and_counts_of_what_the_user_sees(
    db, team, other_team, alice, charlie, tmp_path
):
    register(team, alice, write_component(tmp_path / "a"))
    register(team, alice, write_component(tmp_path / "b", TRAIN.replace("version: 1", "version: 2")))
    register(other_team, charlie, write_component(tmp_path / "c"), name="secret_thing")
    register(other_team, charlie, write_component(tmp_path / "d"), name="shared_thing", visibility="instance")
    page = client_for(alice).get(reverse("component_list")).content.decode()
    assert "train" in page and "<code>2</code>" in page and "shared_thing" in page
    assert "secret_thing" not in page
    found = client_for(alice).get(reverse("component_list"), {"q": "shared"}).content.decode()
    assert "shared_thing" in found and ">train<" not in found


def test_the_detail_page_and_who_may_see_it(db, team, other_team, alice, charlie, compute, tmp_path):
    c = register(team, alice, write_component(tmp_path / "c")).component
    services.pipeline_import(team=team, path=write_pipeline(tmp_path / "p"), user=alice, name="uses_train")
    url = reverse("component_detail", args=[c.pk])
    response = client_for(alice).get(url)
    page = response.content.decode()
    assert response.status_code == 200
    assert "azureml:train:1" in page and "Train a model" in page and "azureml:sklearn:1" in page
    assert 'id="inputs-table"' in page and "<code>lr</code>" in page and "<code>model</code>" in page
    assert "print(&#x27;train&#x27;)" in page  # the code viewer, escaped
    assert "uses_train" in page and "fit" in page
    assert client_for(alice).get(url, {"file": "nope.py"}).status_code == 404

    assert client_for(charlie).get(url).status_code == 404
    c.visibility = Visibility.INSTANCE
    c.save()
    shared = client_for(charlie).get(url)
    assert shared.status_code == 200 and "uses_train" not in shared.content.decode()  # not charlie's pipeline


def test_registering_on_the_page_needs_an_editor(db, team, alice, vera, tmp_path):
    upload = SimpleUploadedFile("c.yml", b"type: command\nname: hello\ncommand: echo hi\n")
    response = client_for(vera).post(reverse("component_register"), {"file": upload, "team": team.pk})
    assert response.status_code == 403 and not Component.objects.exists()

    upload = SimpleUploadedFile("c.yml", b"type: command\nname: hello\ncommand: echo hi\n")
    data = {"file": upload, "team": team.pk, "visibility": "team"}
    response = client_for(alice).post(reverse("component_register"), data)
    c = Component.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("component_detail", args=[c.pk])
    assert (c.name, c.version) == ("hello", "1")


def test_a_bad_upload_shows_its_problems_and_saves_nothing(db, team, alice):
    upload = SimpleUploadedFile("c.yml", b"type: command\nname: hello\ncommand: echo ${{inputs.x}}\n")
    response = client_for(alice).post(
        reverse("component_register"), {"file": upload, "team": team.pk, "visibility": "team"}
    )
    page = response.content.decode()
    assert response.status_code == 400 and "no input &#x27;x&#x27; is declared" in page and "/tmp" not in page
    assert not Component.objects.exists()


def test_register_a_step_from_its_page(db, pipeline, alice, vera, charlie):
    url = reverse("component_register_step", args=[pipeline.pk, "train"])
    assert (
        b'id="register-component"' in client_for(alice).get(reverse("step_edit", args=[pipeline.pk, "train"])).content
    )
    assert client_for(charlie).get(url).status_code == 404
    assert client_for(vera).post(url, {"name": "trainer", "visibility": "team"}).status_code == 403
    assert client_for(alice).get(reverse("component_register_step", args=[pipeline.pk, "nope"])).status_code == 404
    response = client_for(alice).post(url, {"name": "trainer", "version": "", "visibility": "instance"})
    c = Component.objects.get()
    assert response.status_code == 302 and (c.name, c.version, c.visibility) == ("trainer", "1", "instance")


def test_add_step_starts_from_a_component_and_keeps_its_identity(db, pipeline, alice, charlie, tmp_path):
    c = register(pipeline.team, alice, write_component(tmp_path)).component
    url = reverse("step_create", args=[pipeline.pk])
    page = client_for(alice).get(url, {"component": c.pk}).content.decode()
    assert "python train.py --lr" in page and f'name="component" value="{c.pk}"' in page
    assert "print(&#x27;train&#x27;)" in page  # its code file, in the code editor

    hidden = register(Team.objects.get(name="Elsewhere"), charlie, write_component(tmp_path / "x"), name="x").component
    assert "python train.py" not in client_for(alice).get(url, {"component": hidden.pk}).content.decode()

    post = {
        "base_version": pipeline.latest_version.number,
        "component": c.pk,
        "name": "fit",
        "command": c.spec["command"],
        "max_retries": 0,
        "is_deterministic": "on",
        "in-TOTAL_FORMS": 2,
        "in-INITIAL_FORMS": 2,
        "in-0-name": "lr",
        "in-0-type": "number",
        "in-0-source": "none",
        "in-1-name": "data",
        "in-1-type": "uri_folder",
        "in-1-source": "output:prep.data",
        "out-TOTAL_FORMS": 1,
        "out-INITIAL_FORMS": 1,
        "out-0-name": "model",
        "out-0-type": "uri_folder",
        "code-TOTAL_FORMS": 1,
        "code-INITIAL_FORMS": 1,
        "code-0-path": "train.py",
        "code-0-content": "print('train')\n",
    }
    response = client_for(alice).post(url, post)
    assert response.status_code == 302
    pipeline.refresh_from_db()
    fit = services.version_spec_with_files(pipeline.latest_version).jobs["fit"]
    assert (fit.component_name, fit.component_version) == ("train", "1")
    assert fit.input_decls["lr"].default == 0.1  # the component's default, which the form does not show


def test_a_registered_components_distribution_comes_back_in_the_steps_made_from_it(db, team, alice, tmp_path):
    text = TRAIN + "    distribution: {type: pytorch, process_count_per_instance: 2}\n"
    c = register(team, alice, write_component(tmp_path, text)).component
    assert c.spec["distribution"] == {"type": "pytorch", "process_count_per_instance": 2}
    assert cs.component_step(c).distribution == Distribution(type="pytorch", processes=2)
