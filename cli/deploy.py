"""`fusion distill`, `fusion export`, `fusion degrade`, `fusion budget`, `fusion firmware`: from a
pretrained teacher to an int8 microcontroller student, its C export, its degradation report, its
MCU budget and a Cortex-M build checked under QEMU."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cli.errors import reports_errors

if TYPE_CHECKING:
    from fusion.deploy.power import PowerPolicy
    from fusion.deploy.student_io import StudentBundle

console = Console()


class FormatChoice(StrEnum):
    c = "c"
    tflite = "tflite"


def _echo_json(report: dict[str, Any]) -> None:
    typer.echo(json.dumps(report, indent=2, default=str))


def _log(enabled: bool) -> Any:
    def log(line: str) -> None:
        if enabled:
            console.print(line, highlight=False)

    return log


@reports_errors
def distill_cmd(
    teacher: Annotated[Path, typer.Option(help="A `fusion pretrain` checkpoint (.ckpt).")],
    out: Annotated[Path, typer.Option(help="Student directory to write (atomically).")],
    data: Annotated[
        str | None,
        typer.Option(help="Data to distil on (default: the teacher's pretraining data)."),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            help="MCU target the student must fit: m4-256k, m7-512k, NAME:SRAM_KB:FLASH_KB or a "
            "YAML file; the widest stems that fit are chosen."
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps per student.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 32,
    baseline: Annotated[
        bool, typer.Option(help="Also train the baseline student (no sensor dropout).")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of weights and sensor-subset draws.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Print progress lines.")] = True,
) -> None:
    """Distil a pretrained teacher into an int8 microcontroller student (and a baseline student
    trained without sensor dropout), save both to a student directory."""
    from fusion.deploy.budget import budget_report, parse_target
    from fusion.deploy.distill import DistillConfig, distill_checkpoint
    from fusion.deploy.student_io import save_student

    if steps < 1:
        raise typer.BadParameter("--steps must be ≥ 1")
    target = parse_target(budget) if budget else None
    cfg = DistillConfig(steps=steps, batch_size=batch_size, baseline=baseline, seed=seed)
    bundle = distill_checkpoint(
        teacher, data, cfg, budget=target, log=_log(progress and not as_json)
    )
    report = budget_report(bundle.quantized, target or "m4-256k", sensors=bundle.sensors)
    save_student(bundle, out)
    summary = {
        "student": str(out),
        "sensors": bundle.sensors,
        "meta": bundle.meta,
        "budget": report.to_dict(),
    }
    if as_json:
        _echo_json(summary)
        return
    console.print(f"student: {out}", highlight=False)
    for line in report.lines():
        console.print(line, highlight=False)


def _policy(bundle: StudentBundle, power: Path, data: str | None) -> PowerPolicy:
    from fusion.deploy.degradation import degradation_report, load_eval_data
    from fusion.deploy.power import load_power

    model = load_power(power)
    model.check(bundle.sensors)
    tensors, description = load_eval_data(bundle, data)
    no_base = type(bundle)(
        bundle.student, bundle.quantized, bundle.specs, bundle.input_shapes, bundle.meta
    )
    report = degradation_report(no_base, tensors, power=model, info={"data": description})
    assert report.policy is not None
    return report.policy


@reports_errors
def export_cmd(
    student: Annotated[Path, typer.Option(help="A student directory (`fusion distill`).")],
    out: Annotated[Path, typer.Option(help="Folder to write (atomically: temporary, renamed).")],
    format: Annotated[
        FormatChoice, typer.Option(help="c (portable C99) or tflite (optional exporter).")
    ] = FormatChoice.c,
    name: Annotated[str, typer.Option(help="Base name of the C files (a C identifier).")] = (
        "fusion_student"
    ),
    power: Annotated[
        Path | None,
        typer.Option(help="Sensor power YAML: write the power-policy table into the C export."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Labelled data for the power policy's accuracies (default: the student's data)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export a student: portable C99 (int8 weights header, inference source, API header) or,
    where the optional exporter is installed, a full-int8 .tflite."""
    from fusion.deploy.student_io import export_student, load_student, tflite_exporter

    bundle = load_student(student)
    policy = calibration = None
    if power is not None:
        if format is not FormatChoice.c:
            raise typer.BadParameter("--power writes a C table; use it with --format c")
        policy = _policy(bundle, power, data)
    if format is FormatChoice.tflite:
        from fusion.deploy.degradation import load_eval_data
        from fusion.deploy.distill import calibration_pairs

        tflite_exporter()  # fails early, before reading data, when the extra is missing
        train, _ = load_eval_data(bundle, data, split="train")
        calibration = calibration_pairs(train, bundle.sensors, 128)
    summary = export_student(
        bundle, out, format.value, name=name, policy=policy, calibration=calibration
    )
    if policy is not None:
        summary["power_policy"] = policy.to_dict()
    if as_json:
        _echo_json(summary)
        return
    console.print(f"exported {format.value} to {out}", highlight=False)
    for f in summary["files"]:
        console.print(f"  {f}", highlight=False)


@reports_errors
def degrade_cmd(
    student: Annotated[Path, typer.Option(help="A student directory (`fusion distill`).")],
    data: Annotated[
        str | None,
        typer.Option(help="Labelled data (default: the data the student was distilled on)."),
    ] = None,
    power: Annotated[
        Path | None, typer.Option(help="Sensor power YAML: add the power policy.")
    ] = None,
    int8: Annotated[
        bool, typer.Option(help="Also score the int8 students (integer golden model).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write the degradation plot (PNG).")] = None,
) -> None:
    """Accuracy of the student and its baseline for every non-empty sensor subset (float and
    int8), the curve against sensors off, and with --power the power policy."""
    from fusion.deploy.degradation import degradation_report, load_eval_data
    from fusion.deploy.power import load_power
    from fusion.deploy.student_io import load_student

    bundle = load_student(student)
    model = load_power(power) if power else None
    tensors, description = load_eval_data(bundle, data)
    report = degradation_report(
        bundle, tensors, power=model, int8=int8, info={"student": str(student), "data": description}
    )
    if plot:
        report.plot(plot, title=f"{description}")
    if as_json:
        _echo_json(report.to_dict())
        return
    console.print(f"[bold]{description}[/]", highlight=False)
    for line in report.lines():
        console.print(line, highlight=False)
    if plot:
        console.print(f"plot: {plot}", highlight=False)


@reports_errors
def budget_cmd(
    student: Annotated[Path, typer.Option(help="A student directory (`fusion distill`).")],
    target: Annotated[
        str, typer.Option(help="m4-256k, m7-512k, NAME:SRAM_KB:FLASH_KB or a YAML file.")
    ] = "m4-256k",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Flash, SRAM and MACs of a student against a microcontroller target; exits 2 (with by how
    much) when it does not fit."""
    from fusion.deploy.budget import budget_report
    from fusion.deploy.student_io import load_student

    bundle = load_student(student)
    report = budget_report(bundle.quantized, target, sensors=bundle.sensors)
    if as_json:
        _echo_json(report.to_dict())
    else:
        for line in report.lines():
            console.print(line, highlight=False)
    report.require()


class CpuChoice(StrEnum):
    cortex_m4 = "cortex-m4"
    cortex_m7 = "cortex-m7"


@reports_errors
def firmware_cmd(
    student: Annotated[Path, typer.Option(help="A student directory (`fusion distill`).")],
    out: Annotated[Path, typer.Option(help="Folder for the C export, harness and ELF.")],
    cpu: Annotated[
        CpuChoice, typer.Option(help="Core to build for (QEMU board mps2-an386 / mps2-an500).")
    ] = CpuChoice.cortex_m4,
    cases: Annotated[
        int, typer.Option(help="Test vectors (cycling over every non-empty sensor subset).")
    ] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the random int8 test inputs.")] = 0,
    run: Annotated[
        bool, typer.Option(help="Boot the firmware in qemu-system-arm and check its outputs.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Cross-compile the student's C export for a Cortex-M with test vectors from the golden
    model, report flash and RAM from arm-none-eabi-size, and run it under QEMU; exits 1 when an
    output differs from the golden model (needs gcc-arm-none-eabi and qemu-system-arm)."""
    from fusion.deploy.cortex_m import build_firmware, run_firmware
    from fusion.deploy.student_io import load_student

    bundle = load_student(student)
    firmware = build_firmware(bundle.quantized, out, cpu=cpu.value, cases=cases, seed=seed)
    report: dict[str, Any] = {"firmware": firmware.to_dict()}
    result = run_firmware(firmware) if run else None
    if result is not None:
        report["qemu"] = result.to_dict()
    if as_json:
        _echo_json(report)
    else:
        fw = firmware.to_dict()
        console.print(
            f"{fw['cpu']} firmware {fw['elf']}: model flash {fw['model_flash_bytes']:,} B "
            f"(weights {fw['weight_bytes']:,} B), RAM {fw['ram_bytes']:,} B (arena "
            f"{fw['arena_bytes']:,} B, stack {fw['stack_bytes']:,} B); test vectors "
            f"{fw['test_vector_bytes']:,} B",
            highlight=False,
        )
        if result is not None:
            verdict = "bit-exact" if result.passed else "MISMATCH"
            console.print(
                f"{fw['machine']}: {result.output} → {verdict} against the golden model",
                highlight=False,
            )
    if result is not None and not result.passed:
        raise typer.Exit(1)
