"""The ``plancheck`` command line, end to end on the sample export.

Most tests call ``plancheck.cli.main.main(argv)`` in-process and read stdout/stderr with
capsys; a few run ``python -m plancheck`` in a subprocess to prove the exit code and that
no traceback reaches stderr.

A DVH of every structure of the sample takes several seconds, so the full default run is
done once per module (``full_json``) and the other tests ask for one to three structures.

Expected values come from the sample's prescriptions (``sample_dicom/RP_*.dcm``):
C1_Eso 60 Gy / 30 fx, C2_LungMet 50 Gy / 5 fx, C3_VertMet 30 Gy / 3 fx.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from plancheck.cli.exit_codes import ExitCode
from plancheck.cli.main import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_dicom"
PLANS = ("C1_Eso", "C2_LungMet", "C3_VertMet")
RX = {"C1_Eso": (60.0, 30), "C2_LungMet": (50.0, 5), "C3_VertMet": (30.0, 3)}
DEFAULT_METRICS = ["Volume[cc]", "Min[Gy]", "Mean[Gy]", "Max[Gy]", "D98%[Gy]", "D95%[Gy]", "D50%[Gy]",
                   "D2%[Gy]", "D0.03cc[Gy]"]
UNUSABLE_PREFIX = "plancheck: unusable input: "


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """main(argv) → (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def by_label(doc: dict) -> dict[str, dict]:
    return {p["label"]: p for p in doc["plans"]}


def structure(plan: dict, name: str) -> dict:
    (match,) = [s for s in plan["structures"] if s["name"] == name]
    return match


def copy_sample(dest: Path) -> Path:
    """The sample's RT Plans, Structure Set and Doses (the CT is not needed to check a plan)."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in SAMPLE.glob("R[PSD]_*.dcm"):
        shutil.copy2(path, dest / path.name)
    return dest


def assert_one_line_naming(err: str, name: str, problem: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(UNUSABLE_PREFIX)
    assert name in lines[0] and problem in lines[0], lines[0]


@pytest.fixture(autouse=True)
def _restore_root_logger():
    """main() calls logging.basicConfig: keep its handlers from outliving the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# ------------------------------------------------------------------------ module-scoped runs

@pytest.fixture(scope="module")
def full_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``plancheck dvh sample_dicom --format json`` with every structure and the default metrics."""
    out = tmp_path_factory.mktemp("full") / "dvh.json"
    assert main(["dvh", str(SAMPLE), "--format", "json", "--output", str(out)]) == ExitCode.OK
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def subset_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CSV table and DVH curves of PTVp, Heart and SpinalCord, written with --output/--curves."""
    d = tmp_path_factory.mktemp("subset")
    files = {"table": d / "nested" / "table.csv", "curves": d / "curves.csv"}
    code = main(["dvh", str(SAMPLE), "--structure", "PTVp", "--structure", "Heart", "--structure", "SpinalCord",
                 "--format", "csv", "--output", str(files["table"]), "--curves", str(files["curves"])])
    assert code == ExitCode.OK
    return files


# ------------------------------------------------------------------------------------ dvh: output

def test_dvh_text_three_plans_aligned_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "dvh", SAMPLE, "--structure", "PTVp", "--structure", "Heart")
    assert code == ExitCode.OK and err == ""
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert [b.split()[0] for b in blocks] == list(PLANS)
    for block, label in zip(blocks, PLANS):
        rx, n = RX[label]
        lines = block.splitlines()
        assert lines[0].startswith(f"{label}  fractions: {n}  prescription: {rx:g} Gy  engine: plancheck")
        table = [line.rstrip() for line in lines if line.split()[0] in ("Structure", "PTVp", "Heart")]
        assert [line.split()[0] for line in table] == ["Structure", "PTVp", "Heart"]
        for metric in DEFAULT_METRICS[1:]:
            assert metric in table[0]
        # Aligned: every row ends where the (right-justified) last column of the header ends,
        # and each value column ends under its header.
        assert len({len(line) for line in table}) == 1, table
        mean_end = table[0].index("Mean[Gy]") + len("Mean[Gy]")
        for row in table[1:]:
            assert row[mean_end - 1] != " " and row[mean_end] == " "


def test_dvh_json_documented_shape_and_default_metrics(full_json: dict) -> None:
    assert full_json["engine"] == "plancheck"
    plans = full_json["plans"]
    assert [p["label"] for p in plans] == list(PLANS)
    for plan in plans:
        assert {"label", "sop_instance_uid", "fractions", "structures"} <= plan.keys()
        assert plan["fractions"] == RX[plan["label"]][1]
        assert plan["prescription_gy"] == RX[plan["label"]][0]
        assert plan["sop_instance_uid"].startswith("1.2.")
        assert len(plan["structures"]) == 24
        for s in plan["structures"]:
            assert {"name", "roi_number", "volume_cc", "dose_coverage_pct", "metrics"} <= s.keys()
            assert isinstance(s["roi_number"], int)
            assert list(s["metrics"]) == DEFAULT_METRICS
            assert s["dose_coverage_pct"] == pytest.approx(100.0)
            assert s["dose_kind"] == "physical" and s["alpha_beta_gy"] is None
            assert s["undefined"] == {}
            m = s["metrics"]
            assert m["Volume[cc]"] == pytest.approx(s["volume_cc"])
            # Ordering that holds for any DVH: Min ≤ D98 ≤ D95 ≤ D50 ≤ D2 ≤ D0.03cc ≤ Max, Min ≤ Mean ≤ Max.
            chain = [m[k] for k in ("Min[Gy]", "D98%[Gy]", "D95%[Gy]", "D50%[Gy]", "D2%[Gy]", "D0.03cc[Gy]", "Max[Gy]")]
            assert chain == sorted(chain), (plan["label"], s["name"], chain)
            assert m["Min[Gy]"] <= m["Mean[Gy]"] <= m["Max[Gy]"]


def test_dvh_json_values_are_plausible(full_json: dict) -> None:
    plans = by_label(full_json)
    # Each plan covers its own PTV: D95% within 5% of the prescription.
    for label, target in (("C1_Eso", "PTVp"), ("C2_LungMet", "PTV_Met_Lung"), ("C3_VertMet", "PTV_Met_Vert")):
        d95 = structure(plans[label], target)["metrics"]["D95%[Gy]"]
        assert d95 == pytest.approx(RX[label][0], rel=0.05), (label, target, d95)
    # The same structure set (same volumes) in every plan; the lungs are the sum of both lungs.
    volumes = {p["label"]: {s["name"]: s["volume_cc"] for s in p["structures"]} for p in full_json["plans"]}
    assert volumes["C1_Eso"] == volumes["C2_LungMet"] == volumes["C3_VertMet"]
    v = volumes["C1_Eso"]
    assert v["Lungs"] == pytest.approx(v["Lung_L"] + v["Lung_R"], rel=0.01)
    assert v["GTVp"] < v["CTVp"] < v["PTVp"] < v["External"]
    # A lung SBRT plan gives almost nothing to the contralateral lung; the oesophagus plan does not.
    assert structure(plans["C2_LungMet"], "Lung_L")["metrics"]["Max[Gy]"] < 1.0
    assert structure(plans["C1_Eso"], "Esophagus")["metrics"]["Max[Gy]"] > 60.0


def test_dvh_csv_and_output_file(subset_files: dict[str, Path], full_json: dict) -> None:
    rows = list(csv.DictReader(io.StringIO(subset_files["table"].read_text(encoding="utf-8"))))
    assert list(rows[0]) == ["plan_label", "structure", "roi_number", "volume_cc", "dose_coverage_pct", "dose_kind",
                             "alpha_beta_gy", "metric", "value", "unit", "note", "volume_model"]
    assert len(rows) == 3 * 3 * len(DEFAULT_METRICS)
    assert {(r["plan_label"], r["structure"]) for r in rows} == {(p, s) for p in PLANS for s in ("PTVp", "Heart", "SpinalCord")}
    assert {r["unit"] for r in rows if r["metric"] != "Volume[cc]"} == {"Gy"}
    plans = by_label(full_json)
    for r in rows:  # the CSV values are the JSON values, rounded to 4 decimals
        expected = structure(plans[r["plan_label"]], r["structure"])["metrics"][r["metric"]]
        assert float(r["value"]) == pytest.approx(expected, abs=6e-5)
    assert not [p.name for p in subset_files["table"].parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_dvh_curves_csv_monotone(subset_files: dict[str, Path], full_json: dict) -> None:
    rows = list(csv.DictReader(io.StringIO(subset_files["curves"].read_text(encoding="utf-8"))))
    assert list(rows[0]) == ["plan_label", "structure", "dose_kind", "dose_gy", "volume_cc", "volume_pct"]
    curves: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in rows:
        curves.setdefault((r["plan_label"], r["structure"]), []).append(
            (float(r["dose_gy"]), float(r["volume_cc"]), float(r["volume_pct"])))
    assert set(curves) == {(p, s) for p in PLANS for s in ("PTVp", "Heart", "SpinalCord")}
    plans = by_label(full_json)
    for (label, name), points in curves.items():
        doses = [d for d, _, _ in points]
        volumes = [v for _, v, _ in points]
        assert doses == sorted(doses) and len(set(doses)) == len(doses)
        assert all(b <= a for a, b in zip(volumes, volumes[1:])), (label, name)
        assert doses[0] == 0.0
        assert volumes[0] == pytest.approx(structure(plans[label], name)["volume_cc"], rel=1e-4)
        assert points[0][2] == pytest.approx(100.0, abs=0.01)
        assert doses[-1] >= structure(plans[label], name)["metrics"]["Max[Gy]"] - 0.1


def test_dvh_selected_structures_and_metrics(capsys: pytest.CaptureFixture[str], full_json: dict) -> None:
    """V95%[%] is relative to each plan's own prescription: it equals V(0.95·Rx)Gy[%]."""
    metrics = ["V95%[%]", "D0.03cc[Gy]", "V57Gy[%]", "V47.5Gy[%]", "V28.5Gy[%]"]
    code, out, err = run_cli(capsys, "dvh", SAMPLE, "--structure", "PTVp", "--structure", "PTV_Met_Vert",
                             *[a for m in metrics for a in ("--metric", m)], "--format", "json")
    assert code == ExitCode.OK and err == ""
    plans = by_label(json.loads(out))
    same_as = {"C1_Eso": "V57Gy[%]", "C2_LungMet": "V47.5Gy[%]", "C3_VertMet": "V28.5Gy[%]"}
    for label, plan in plans.items():
        assert [s["name"] for s in plan["structures"]] == ["PTVp", "PTV_Met_Vert"]
        for s in plan["structures"]:
            assert list(s["metrics"]) == metrics
            assert s["metrics"]["V95%[%]"] == pytest.approx(s["metrics"][same_as[label]], abs=1e-6)
            full = structure(by_label(full_json)[label], s["name"])["metrics"]
            assert s["metrics"]["D0.03cc[Gy]"] == pytest.approx(full["D0.03cc[Gy]"], abs=1e-9)
    assert structure(plans["C1_Eso"], "PTVp")["metrics"]["V95%[%]"] == pytest.approx(100.0)
    # 28.5 Gy lies between the minimum (≈27 Gy) and D98% (≈29 Gy) of PTV_Met_Vert in C3: with
    # any other plan's prescription the answer would be 0 %.
    assert 98.0 < structure(plans["C3_VertMet"], "PTV_Met_Vert")["metrics"]["V95%[%]"] < 100.0


def test_structure_names_match_case_insensitively(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "dvh", SAMPLE, "--structure", "ptvp", "--metric", "Mean[Gy]", "--format", "json")
    assert code == ExitCode.OK
    assert {s["name"] for p in json.loads(out)["plans"] for s in p["structures"]} == {"PTVp"}


def test_failed_run_writes_no_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file, curves = tmp_path / "out.json", tmp_path / "curves.csv"
    code, out, err = run_cli(capsys, "dvh", SAMPLE, "--structure", "NoSuchOrgan", "--format", "json",
                             "--output", out_file, "--curves", curves)
    assert code == ExitCode.USAGE_ERROR and out == ""
    assert "NoSuchOrgan" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- usage errors → 2

@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dvh", SAMPLE, "--bogus"], "plancheck: error: unrecognized arguments: --bogus"),
        (["dvh", SAMPLE, "--structure", "PTVp", "--metric", "D95[Gy]"],
         "plancheck: error: cannot parse DVH metric 'D95[Gy]': expected TG-263 forms such as D95%[Gy]"),
        (["dvh", SAMPLE, "--dose-kind", "eqd2", "--alpha-beta", "-1"], "--alpha-beta -1: α/β must be > 0 Gy"),
        (["dvh", SAMPLE, "--dose-kind", "bed", "--alpha-beta", "0"], "--alpha-beta 0: α/β must be > 0 Gy"),
        (["dvh", SAMPLE, "--alpha-beta", "3"], "--alpha-beta applies to --dose-kind eqd2 or bed"),
        (["dvh", SAMPLE, "--alpha-beta-for", "SpinalCord=2"], "--alpha-beta applies to --dose-kind eqd2 or bed"),
        (["dvh", SAMPLE, "--dose-kind", "eqd2", "--alpha-beta-for", "SpinalCord"],
         "--alpha-beta-for 'SpinalCord': expected NAME=GY with a positive α/β"),
        (["dvh", SAMPLE, "--dose-kind", "eqd2", "--alpha-beta-for", "SpinalCord=-2"],
         "--alpha-beta-for 'SpinalCord=-2': expected NAME=GY with a positive α/β"),
        (["dvh", SAMPLE, "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["dvh", SAMPLE, "--engine", "dicompyler", "--dose-kind", "eqd2", "--structure", "PTVp"],
         "the dicompyler engine computes physical DVHs of single courses only"),
        (["dvh"], "the following arguments are required: PATH"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
    ids=["unknown-option", "bad-metric", "alpha-beta-negative", "alpha-beta-zero", "alpha-beta-physical",
         "alpha-beta-for-physical", "alpha-beta-for-no-value", "alpha-beta-for-negative", "bad-format",
         "dicompyler-eqd2", "no-path", "unknown-command"],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list, message: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == ExitCode.USAGE_ERROR
    assert message in err
    assert out == "" and "Traceback" not in err


def test_unknown_structure_lists_available_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "dvh", SAMPLE, "--structure", "Kidney_L")
    assert code == ExitCode.USAGE_ERROR and out == ""
    assert "plancheck: error: structure 'Kidney_L' is not in the structure set; available: " in err
    available = err.split("available: ", 1)[1].strip().split(", ")
    assert "PTVp" in available and "SpinalCord" in available and len(available) == 24


def test_no_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys)
    assert code == ExitCode.USAGE_ERROR and out == ""
    assert "usage: plancheck" in err and "dvh" in err and "fractionation" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == ExitCode.OK and out.strip() == "plancheck 0.1.0"


def test_internal_error_is_exit_70_without_traceback(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("plancheck.dicom.read_export", boom)  # the command imports it when it runs
    code, _, err = run_cli(capsys, "dvh", SAMPLE)
    assert code == ExitCode.INTERNAL_ERROR
    assert "plancheck: internal error (RuntimeError: boom); rerun with --debug" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "--debug", "dvh", SAMPLE)
    assert code == ExitCode.INTERNAL_ERROR and "Traceback" in err


def test_ctrl_c_is_exit_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("plancheck.dicom.read_export", interrupted)
    code, _, err = run_cli(capsys, "dvh", SAMPLE)
    assert code == ExitCode.INTERRUPTED == 130
    assert err.strip() == "plancheck: interrupted"


def test_every_exit_code_the_cli_returns_is_documented() -> None:
    """``main`` returns only ExitCode members (every ``return`` of the command modules names one),
    and the README's exit-code table lists exactly them."""
    import ast
    import re

    cli = Path(__file__).resolve().parents[1] / "plancheck" / "cli"
    for path in cli.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int) \
                    and not isinstance(node.value.value, bool):
                raise AssertionError(f"{path.name}:{node.lineno} returns the bare number {node.value.value}; use ExitCode")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


# ------------------------------------------------------------------------ unusable input → 3

def _not_dicom_alone(tmp_path: Path) -> list[Path]:
    (tmp_path / "notes.txt").write_text("not a DICOM file\n")
    return [tmp_path / "notes.txt"]


def _not_dicom_with_sample(tmp_path: Path) -> list[Path]:
    return [SAMPLE, *_not_dicom_alone(tmp_path)]


def _truncated_dose(tmp_path: Path) -> list[Path]:
    export = copy_sample(tmp_path / "export")
    rd = export / "RD_C1_Eso.dcm"
    data = rd.read_bytes()
    rd.write_bytes(data[: len(data) // 2])
    return [export]


def _relative_dose(tmp_path: Path) -> list[Path]:
    # (3004,0002) Dose Units, explicit VR little endian: tag, 'CS', length 2, 'GY'. It is a
    # top-level element, so giving it a longer value shifts nothing that a length depends on.
    export = copy_sample(tmp_path / "export")
    rd = export / "RD_C1_Eso.dcm"
    gy = b"\x04\x30\x02\x00CS\x02\x00GY"
    data = rd.read_bytes()
    assert data.count(gy) == 1
    rd.write_bytes(data.replace(gy, b"\x04\x30\x02\x00CS\x08\x00RELATIVE"))
    return [export]


def _plan_without_dose(tmp_path: Path) -> list[Path]:
    export = copy_sample(tmp_path / "export")
    (export / "RD_C2_LungMet.dcm").unlink()
    return [export]


def _nothing_usable(tmp_path: Path) -> list[Path]:
    d = tmp_path / "junk"
    d.mkdir()
    (d / "a.txt").write_text("hello")
    (d / "b.bin").write_bytes(b"\x00" * 300)
    return [d]


def _missing(tmp_path: Path) -> list[Path]:
    return [tmp_path / "nowhere"]


UNUSABLE: dict[str, tuple[Callable[[Path], list[Path]], str, str]] = {
    # case: (builder, file named in the message, problem)
    "not-dicom": (_not_dicom_alone, "notes.txt", "not a DICOM file"),
    "not-dicom-beside-sample": (_not_dicom_with_sample, "notes.txt", "not a DICOM file"),
    "truncated-dose": (_truncated_dose, "RD_C1_Eso.dcm", "the file is truncated"),
    "relative-dose": (_relative_dose, "RD_C1_Eso.dcm", "(3004,0002) 'Dose Units' is 'RELATIVE', plancheck needs absolute dose 'GY'"),
    "plan-without-dose": (_plan_without_dose, "RP_C2_LungMet.dcm", "RT Plan 'C2_LungMet' has no usable dose"),
    "nothing-usable": (_nothing_usable, "junk", "no RT Plan found among 2 file(s) (2 not DICOM"),
    "missing-path": (_missing, "nowhere", "no such file or directory"),
}


#: what makes an input unusable for ``dvh`` but not for ``fractionation``, which works from the
#: plan alone (test_fractionation_without_a_usable_dose)
DOSE_OPTIONAL = ("relative-dose", "plan-without-dose")


@pytest.mark.parametrize(("command", "case"), [("dvh", case) for case in UNUSABLE]
                         + [("fractionation", case) for case in UNUSABLE if case not in DOSE_OPTIONAL])
def test_unusable_input(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, command: str) -> None:
    builder, name, problem = UNUSABLE[case]
    paths = builder(tmp_path)
    extra = ["--structure", "PTVp", "--output", tmp_path / "out.txt"] if command == "dvh" else []
    code, out, err = run_cli(capsys, command, *paths, *extra)
    assert code == ExitCode.INPUT_ERROR
    assert out == ""
    assert_one_line_naming(err, name, problem)
    assert not (tmp_path / "out.txt").exists()



@pytest.mark.parametrize("case", DOSE_OPTIONAL)
def test_fractionation_without_a_usable_dose(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    """The plan alone is enough for fractionation: the plan is listed, D95% is not, and a remark
    names the dose problem (the same problem ``check`` and ``dvh`` stop on)."""
    builder, name, problem = UNUSABLE[case]
    code, out, err = run_cli(capsys, "fractionation", *builder(tmp_path), "--format", "json")
    assert code == ExitCode.OK, err
    doc = json.loads(out)
    assert [c["label"] for c in doc["courses"]] == list(PLANS)
    [without] = [c for c in doc["courses"] if any("D95% not computed" in r for r in c["remarks"])]
    assert without["target_d95_gy"] is None and without["bed10_gy"] is not None
    assert any(problem in r for r in without["remarks"])


# ------------------------------------------------------------------------------ subprocesses

def _python_m_plancheck(*argv: object) -> subprocess.CompletedProcess[str]:
    # cwd is the repository: the console script and ``python -m`` import the package from there.
    return subprocess.run([sys.executable, "-m", "plancheck", *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_subprocess_ok_exit_0() -> None:
    proc = _python_m_plancheck("fractionation", SAMPLE, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [c["label"] for c in json.loads(proc.stdout)["courses"]] == list(PLANS)


def test_subprocess_unusable_input_exit_3_no_traceback(tmp_path: Path) -> None:
    (export,) = _truncated_dose(tmp_path)
    proc = _python_m_plancheck("dvh", export)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert_one_line_naming(proc.stderr, str(export / "RD_C1_Eso.dcm"), "the file is truncated")


def test_subprocess_usage_error_exit_2_no_traceback() -> None:
    proc = _python_m_plancheck("dvh", SAMPLE, "--metric", "D95[Gy]", "--structure", "PTVp")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("plancheck: error: cannot parse DVH metric 'D95[Gy]': expected TG-263 forms such as "
                                   "D95%[Gy], D0.03cc[Gy], DC700cc[Gy], V20Gy[%], V20Gy[cc], CV15Gy[cc], V95%[%], "
                                   "Mean[Gy], Max[Gy], Min[Gy], Volume[cc]")


# --------------------------------------------------------------------------- dicompyler engine

@pytest.mark.filterwarnings("ignore:The 'pydicom.pixel_data_handlers' module:DeprecationWarning")
def test_dicompyler_engine_agrees_with_plancheck(capsys: pytest.CaptureFixture[str], full_json: dict) -> None:
    code, out, _ = run_cli(capsys, "dvh", SAMPLE, "--engine", "dicompyler", "--structure", "PTVp", "--format", "json")
    assert code == ExitCode.OK
    doc = json.loads(out)
    assert doc["engine"] == "dicompyler-core"
    ours = by_label(full_json)
    for label, plan in by_label(doc).items():
        (ptv,) = plan["structures"]
        assert ptv["name"] == "PTVp"
        assert any("dicompyler-core" in note for note in ptv["notes"])
        mine = structure(ours[label], "PTVp")["metrics"]["Mean[Gy]"]
        # 2 % of the mean, or 2 % of the plan's prescription where the PTVp sees almost no dose.
        tolerance = 0.02 * (mine if label == "C1_Eso" else RX[label][0])
        assert ptv["metrics"]["Mean[Gy]"] == pytest.approx(mine, abs=tolerance), label
    c1 = structure(by_label(doc)["C1_Eso"], "PTVp")["metrics"]["Mean[Gy]"]
    assert c1 == pytest.approx(structure(ours["C1_Eso"], "PTVp")["metrics"]["Mean[Gy]"], rel=0.02)


# ------------------------------------------------------------------------------- fractionation

def test_fractionation_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "fractionation", SAMPLE, "--format", "json")
    assert code == ExitCode.OK and err == ""
    doc = json.loads(out)
    assert doc["alpha_beta_gy"] == 10.0
    courses = {c["label"]: c for c in doc["courses"]}
    assert list(courses) == list(PLANS)
    c1, c2, c3 = (courses[p] for p in PLANS)
    # C1: 60 Gy / 30 fx = 2 Gy/fx, so EQD2(10) = 60 Gy and BED10 = 60 (1 + 2/10) = 72 Gy.
    assert (c1["prescription_gy"], c1["fractions"], c1["regime"]) == (60.0, 30, "conventional")
    assert c1["eqd2_10_gy"] == pytest.approx(60.0) and c1["bed10_gy"] == pytest.approx(72.0)
    # C2: 50 Gy / 5 fx = 10 Gy/fx: BED10 = 50 (1 + 10/10) = 100 Gy, EQD2 = 100 / 1.2 = 83.33 Gy.
    assert (c2["prescription_gy"], c2["fractions"], c2["regime"]) == (50.0, 5, "SBRT")
    assert c2["bed10_gy"] == pytest.approx(100.0) and c2["eqd2_10_gy"] == pytest.approx(100.0 / 1.2)
    # C3: 30 Gy / 3 fx = 10 Gy/fx: BED10 = 30 · 2 = 60 Gy, EQD2 = 50 Gy.
    assert (c3["prescription_gy"], c3["fractions"], c3["regime"]) == (30.0, 3, "SBRT")
    assert c3["bed10_gy"] == pytest.approx(60.0) and c3["eqd2_10_gy"] == pytest.approx(50.0)
    assert [c["target"] for c in (c1, c2, c3)] == ["PTVp", "PTV_Met_Lung", "PTV_Met_Vert"]


def test_fractionation_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "fractionation", SAMPLE)
    assert code == ExitCode.OK and err == ""
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in PLANS}
    # Course, Rx, fractions, Gy/fx, BED10, EQD2(10), regime
    assert rows["C1_Eso"][:7] == ["C1_Eso", "60", "30", "2", "72.00", "60.00", "conventional"]
    assert rows["C2_LungMet"][:7] == ["C2_LungMet", "50", "5", "10", "100.00", "83.33", "SBRT"]
    assert rows["C3_VertMet"][:7] == ["C3_VertMet", "30", "3", "10", "60.00", "50.00", "SBRT"]
    header = next(line for line in out.splitlines() if line.startswith("Course"))
    assert "BED10 [Gy]" in header and "EQD2(10) [Gy]" in header


# ------------------------------------------------------------------------------- EQD2 and BED

def test_eqd2_with_alpha_beta_and_per_structure_override(capsys: pytest.CaptureFixture[str], full_json: dict) -> None:
    code, out, err = run_cli(capsys, "dvh", SAMPLE, "--dose-kind", "eqd2", "--alpha-beta", "3",
                             "--alpha-beta-for", "SpinalCord=2", "--structure", "Heart", "--structure", "SpinalCord",
                             "--format", "json")
    assert code == ExitCode.OK and err == ""
    physical = by_label(full_json)
    for label, plan in by_label(json.loads(out)).items():
        heart, cord = structure(plan, "Heart"), structure(plan, "SpinalCord")
        assert (heart["alpha_beta_gy"], heart["alpha_beta_source"]) == (3.0, "given on the command line")
        assert heart["dose_kind"] == "EQD2(α/β=3 Gy)"
        assert (cord["alpha_beta_gy"], cord["alpha_beta_source"]) == (2.0, "given for this structure on the command line")
        assert cord["dose_kind"] == "EQD2(α/β=2 Gy)"
        assert heart["volume_cc"] == pytest.approx(structure(physical[label], "Heart")["volume_cc"])
        # EQD2 is monotone in the voxel dose, so the hottest voxel maps to EQD2 of the physical maximum:
        # EQD2 = D (D/n + α/β) / (2 + α/β), n the plan's fractions.
        n = RX[label][1]
        for s, ab in ((heart, 3.0), (cord, 2.0)):
            d_max = structure(physical[label], s["name"])["metrics"]["Max[Gy]"]
            assert s["metrics"]["Max[Gy]"] == pytest.approx(d_max * (d_max / n + ab) / (2 + ab), rel=0.01, abs=0.01)
    c1_heart = structure(by_label(json.loads(out))["C1_Eso"], "Heart")["metrics"]
    c1_phys = structure(physical["C1_Eso"], "Heart")["metrics"]
    assert c1_heart["Mean[Gy]"] != pytest.approx(c1_phys["Mean[Gy]"], rel=0.05)  # differs from physical
    assert c1_heart["Max[Gy]"] > c1_phys["Max[Gy]"]  # > 2 Gy/fx at the hot spot: EQD2 above physical
    assert c1_heart["Mean[Gy]"] < c1_phys["Mean[Gy]"]  # most of the heart sees < 2 Gy/fx


def test_composite_physical_sum(capsys: pytest.CaptureFixture[str], full_json: dict) -> None:
    code, out, _ = run_cli(capsys, "dvh", SAMPLE, "--composite", "--structure", "PTVp", "--metric", "Mean[Gy]",
                           "--format", "json")
    assert code == ExitCode.OK
    (plan,) = json.loads(out)["plans"]
    assert plan["label"] == "composite" and plan["composite_of"] == list(PLANS)
    assert plan["fractions"] is None and plan["prescription_gy"] is None  # several regimens: no single value
    assert all(f"{label} ({RX[label][1]} fx)" in plan["dose_summary"] for label in PLANS)
    # The mean of a sum is the sum of the means (each course resampled; 1 % for the resampling).
    expected = sum(structure(p, "PTVp")["metrics"]["Mean[Gy]"] for p in full_json["plans"])
    assert structure(plan, "PTVp")["metrics"]["Mean[Gy]"] == pytest.approx(expected, rel=0.01)


# -------------------------------------------------------------------------- regressions (bugs found and fixed)

def test_text_headers_keep_bracketed_units(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "dvh", SAMPLE, "--structure", "PTVp", "--metric", "V20Gy[cc]", "--metric", "V20Gy[%]")
    assert code == ExitCode.OK
    header = next(line for line in out.splitlines() if line.startswith("Structure"))
    assert "Volume [cc]" in header and "V20Gy[cc]" in header and "V20Gy[%]" in header


def test_alpha_beta_for_unknown_structure_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "dvh", SAMPLE, "--dose-kind", "eqd2", "--alpha-beta-for", "Spinalcord_typo=7",
                           "--structure", "SpinalCord", "--format", "json")
    assert code == ExitCode.USAGE_ERROR
    assert "Spinalcord_typo" in err


def test_unwritable_output_is_not_an_internal_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "a_directory"
    target.mkdir()
    code, _, err = run_cli(capsys, "dvh", SAMPLE, "--structure", "PTVp", "--metric", "Mean[Gy]", "--output", target)
    assert code == ExitCode.USAGE_ERROR  # a directory where a file name was asked for: the argument
    assert "internal error" not in err and str(target) in err
