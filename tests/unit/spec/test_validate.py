"""validate_pipeline on in-memory pipelines (the editor's path) and through YAML (file, job, field, line)."""

from __future__ import annotations

import pytest

from stepwise.spec import (
    DataPath,
    InputDecl,
    JobOutput,
    OutputDecl,
    ParentInput,
    ParentOutputRef,
    Pipeline,
    Step,
    validate_pipeline,
)

from .helpers import errors_of, one


def pipeline(*steps: Step, **kwargs) -> Pipeline:
    return Pipeline(name="p", jobs={s.name: s for s in steps}, **kwargs)


def step(name: str, command: str = "echo", **kwargs) -> Step:
    return Step(name=name, command=command, component_name=name, component_version="1", **kwargs)


def errors(p: Pipeline, **kwargs) -> list:
    return [x for x in validate_pipeline(p, **kwargs) if x.severity == "error"]


def producer(name: str = "a") -> Step:
    return step(name, "make ${{outputs.o}}", output_decls={"o": OutputDecl()})


def consumer(name: str, upstream: str, output: str = "o") -> Step:
    return step(
        name,
        "use ${{inputs.x}}",
        input_decls={"x": InputDecl(type="uri_folder")},
        inputs={"x": JobOutput(upstream, output)},
    )


def test_a_valid_pipeline_has_no_errors():
    assert errors(pipeline(producer("a"), consumer("b", "a"))) == []


def test_mismatched_key_and_name():
    p = pipeline(step("a"))
    p.jobs["b"] = p.jobs.pop("a")
    assert one(errors(p), "job key 'b' and step name 'a' differ").job == "b"


@pytest.mark.parametrize("name", ["1abc", "a-c", "Abc", "hello.world", "", "a b", "x" * 256])
def test_invalid_job_names(name):
    assert one(errors(pipeline(step(name))), "invalid job name").job == name


@pytest.mark.parametrize("name", ["_abc", "n", "name_1", "n_a_m_e"])
def test_valid_job_names(name):
    assert errors(pipeline(step(name))) == []


def test_binding_to_missing_job_output_and_pipeline_input():
    p = pipeline(
        producer("a"),
        consumer("b", "nope"),
        consumer("c", "a", "missing"),
        step("d", "x ${{inputs.y}}", input_decls={"y": InputDecl(type="string")}, inputs={"y": ParentInput("absent")}),
    )
    problems = errors(p)
    assert one(problems, "job 'nope', which does not exist").field == "inputs.x"
    assert one(problems, "job 'a' has no output 'missing'").job == "c"
    assert one(problems, "pipeline input 'absent', which is not declared").job == "d"


def test_command_references_undeclared_inputs_and_outputs():
    problems = errors(pipeline(step("a", "run ${{inputs.x}} ${{outputs.y}}")))
    assert one(problems, "${{inputs.x}} but no input 'x'").field == "command"
    assert one(problems, "${{outputs.y}} but no output 'y'").field == "command"


def test_binding_an_undeclared_input():
    problem = one(errors(pipeline(step("a", inputs={"zz": 1}))), "no input 'zz' is declared")
    assert problem.field == "inputs.zz"


def test_required_input_left_unbound():
    decls = {
        "req": InputDecl(type="integer"),
        "opt": InputDecl(type="integer", optional=True),
        "dflt": InputDecl(type="integer", default=3),
    }
    problems = errors(pipeline(step("a", "x ${{inputs.req}} $[[${{inputs.opt}}]] ${{inputs.dflt}}", input_decls=decls)))
    assert one(problems, "required input 'req'").field == "inputs.req"
    assert len(problems) == 1


@pytest.mark.parametrize(
    "type_, value, needle",
    [
        ("integer", "abc", "expected an integer"),
        ("integer", 1.5, "expected an integer"),
        ("integer", True, "expected an integer"),
        ("boolean", "yes", "expected a boolean"),
        ("boolean", 1, "expected a boolean"),
        ("number", "fast", "expected a number"),
        ("string", 3, "expected a string"),
        ("uri_folder", "./data", "needs data"),
    ],
)
def test_literal_type_mismatch(type_, value, needle):
    s = step("a", "x ${{inputs.v}}", input_decls={"v": InputDecl(type=type_)}, inputs={"v": value})
    assert one(errors(pipeline(s)), needle).field == "inputs.v"


def test_integer_feeds_number_and_enum_is_checked():
    decls = {"n": InputDecl(type="number"), "e": InputDecl(type="string", enum=["gini", "entropy"])}
    assert errors(pipeline(step("a", input_decls=decls, inputs={"n": 3, "e": "gini"}))) == []
    problem = one(errors(pipeline(step("a", input_decls=decls, inputs={"n": 3, "e": "other"}))), "allowed values")
    assert problem.field == "inputs.e"


def test_bad_defaults_and_types():
    decls = {
        "i": InputDecl(type="integer", default="ten"),
        "t": InputDecl(type="tensor"),
        "e": InputDecl(type="string", default="c", enum=["a", "b"]),
    }
    problems = errors(pipeline(step("a", input_decls=decls)))
    assert one(problems, "expected an integer").field == "inputs.i.default"
    assert one(problems, "unknown input type 'tensor'").field == "inputs.t.type"
    assert one(problems, "allowed values").field == "inputs.e.default"


def test_pipeline_input_type_must_fit():
    p = pipeline(
        step("a", input_decls={"n": InputDecl(type="integer")}, inputs={"n": ParentInput("data")}),
        inputs={"data": InputDecl(type="uri_folder", optional=True)},
    )
    assert one(errors(p), "pipeline input 'data' is uri_folder but the input is integer").job == "a"


def test_cycle_names_the_steps():
    a = step(
        "a",
        "x ${{inputs.i}} ${{outputs.o}}",
        input_decls={"i": InputDecl(type="uri_folder")},
        inputs={"i": JobOutput("b", "o")},
        output_decls={"o": OutputDecl()},
    )
    b = step(
        "b",
        "x ${{inputs.i}} ${{outputs.o}}",
        input_decls={"i": InputDecl(type="uri_folder")},
        inputs={"i": JobOutput("a", "o")},
        output_decls={"o": OutputDecl()},
    )
    assert one(errors(pipeline(a, b)), "cycle").message == "cycle: a -> b -> a"


def test_longer_cycle_and_self_loop():
    def link(name: str, up: str) -> Step:
        return step(
            name,
            input_decls={"i": InputDecl(type="uri_folder")},
            inputs={"i": JobOutput(up, "o")},
            output_decls={"o": OutputDecl()},
        )

    assert one(errors(pipeline(link("a", "c"), link("b", "a"), link("c", "b"))), "cycle").message == (
        "cycle: a -> b -> c -> a"
    )
    assert one(errors(pipeline(link("solo", "solo"))), "cycle").message == "cycle: solo -> solo"


def test_unknown_compute():
    p = pipeline(step("a", compute="azureml:gpu-cluster"))
    p.settings.default_compute = "azureml:cpu-cluster"
    problems = errors(p, known_computes={"cpu-cluster", "local"})
    problem = one(problems, "unknown compute 'gpu-cluster'")
    assert problem.job == "a" and problem.field == "compute" and "cpu-cluster, local" in problem.message
    assert errors(p) == []  # None: not checked
    p.jobs["a"].compute = "local"
    assert errors(p, known_computes={"cpu-cluster", "local"}) == []
    assert one(errors(p, known_computes={"local"}), "cpu-cluster").field == "settings.default_compute"


def test_negative_timeout_and_retries():
    problems = errors(pipeline(step("a", timeout_s=-5, max_retries=-1)))
    assert one(problems, "timeout").field == "limits.timeout"
    assert one(problems, "max_retries").field == "retry_settings.max_retries"


def test_output_bound_to_undeclared_parent_output():
    s = step("a", "x ${{outputs.o}}", output_decls={"o": OutputDecl()}, outputs={"o": ParentOutputRef("final")})
    problem = one(errors(pipeline(s)), "pipeline output 'final', which is not declared")
    assert problem.job == "a" and problem.field == "outputs.o"
    assert errors(pipeline(s, outputs={"final": OutputDecl()})) == []


def test_undeclared_output_and_double_bound_parent_output():
    a = step("a", output_decls={"o": OutputDecl()}, outputs={"o": ParentOutputRef("f"), "zz": None})
    b = step("b", output_decls={"o": OutputDecl()}, outputs={"o": ParentOutputRef("f")})
    problems = errors(pipeline(a, b, outputs={"f": OutputDecl()}))
    assert one(problems, "no output 'zz'").field == "outputs.zz"
    assert one(problems, "already bound by job 'a'").job == "b"


def test_files_and_data_keys():
    p = pipeline(
        step(
            "a",
            "x ${{inputs.d}}",
            input_decls={"d": InputDecl(type="uri_file")},
            inputs={"d": DataPath("uri_file", "data/a.d")},
        ),
        inputs={"f": InputDecl(type="uri_folder", data=DataPath("uri_folder", "data/wrong"))},
        files={"data/a.d/x.csv": b"1", "data/a.d/y.csv": b"2", "code/a/m.py": b"", "../etc/passwd": b""},
    )
    problems = errors(p)
    one(problems, "exactly one file, found 2")
    one(problems, "data key must be 'data/f'")
    one(problems, "'code/a/m.py' belongs to no step")
    one(problems, "unsafe file name '../etc/passwd'")


def test_optional_input_outside_segment_is_a_warning():
    s = step("a", "x ${{inputs.o}}", input_decls={"o": InputDecl(type="string", optional=True)})
    problems = validate_pipeline(pipeline(s))
    assert [p.severity for p in problems] == ["warning"]


# -- the same checks through YAML: file, job, field and line -----------------------------------


def test_yaml_cycle_and_missing_binding_name_file_job_field_line():
    text = """\
        type: pipeline
        jobs:
          a:
            command: echo ${{inputs.i}} ${{outputs.o}}
            inputs:
              i: ${{parent.jobs.b.outputs.o}}
            outputs:
              o:
          b:
            command: echo ${{inputs.i}} ${{outputs.o}}
            inputs:
              i: ${{parent.jobs.a.outputs.o}}
              j: ${{parent.jobs.ghost.outputs.o}}
            outputs:
              o:
    """
    problems = errors_of(text, filename="flow.yml")
    cycle = one(problems, "cycle: a -> b -> a")
    assert cycle.file == "flow.yml" and cycle.job == "a"
    ghost = one(problems, "job 'ghost'")
    assert (ghost.file, ghost.job, ghost.field, ghost.line) == ("flow.yml", "b", "inputs.j", 13)
    assert str(ghost).startswith("flow.yml:13: job 'b': field 'inputs.j': ")


def test_yaml_type_mismatch_and_unknown_compute():
    text = """\
        type: pipeline
        inputs:
          epochs: ten
        jobs:
          train:
            component:
              type: command
              inputs:
                epochs: {type: integer}
                flag: {type: boolean}
              command: train ${{inputs.epochs}} ${{inputs.flag}}
            inputs:
              epochs: ${{parent.inputs.epochs}}
              flag: maybe
            compute: azureml:gpu
    """
    problems = errors_of(text, known_computes={"cpu-cluster"})
    assert one(problems, "pipeline input 'epochs' is string but the input is integer").line == 13
    flag = one(problems, "expected a boolean")
    assert (flag.job, flag.field, flag.line) == ("train", "inputs.flag", 14)
    assert one(problems, "unknown compute 'gpu'").line == 15


def test_yaml_invalid_job_name_and_undeclared_reference():
    problems = errors_of("type: pipeline\njobs:\n  Train-Model:\n    command: python t.py ${{inputs.lr}}\n")
    name = one(problems, "invalid job name 'Train-Model'")
    assert name.line == 3
    ref = one(problems, "no input 'lr'")
    assert (ref.job, ref.field, ref.line) == ("Train-Model", "command", 4)


def test_yaml_component_file_problems_point_into_the_component(tmp_path):
    from .helpers import load_errors, write

    path = write(
        tmp_path,
        {
            "pipeline.yml": "type: pipeline\njobs:\n  a:\n    component: ./comp.yml\n",
            "comp.yml": """\
                type: command
                inputs:
                  n: {type: integer, default: lots}
                  req: {type: string}
                command: run ${{inputs.n}} ${{inputs.req}} ${{outputs.model}}
            """,
        },
    )
    problems = load_errors(path)
    default = one(problems, "expected an integer")
    assert default.file.endswith("comp.yml") and default.field == "inputs.n.default" and default.line == 3
    output = one(problems, "no output 'model'")
    assert output.file.endswith("comp.yml") and output.line == 5
    required = one(problems, "required input 'req'")
    assert required.file == str(path) and required.job == "a"


def test_yaml_negative_values_and_undeclared_parent_output():
    text = """\
        type: pipeline
        jobs:
          a:
            command: echo ${{outputs.o}}
            limits: {timeout: -1}
            retry_settings: {max_retries: -2}
            outputs:
              o: ${{parent.outputs.final}}
    """
    problems = errors_of(text)
    assert one(problems, "timeout").line == 5
    assert one(problems, "max_retries").line == 6
    assert one(problems, "pipeline output 'final'").line == 8
