"""Deploy: a microcontroller-sized student, full-int8 quantisation, a numpy golden model and a
portable C99 export that matches it bit for bit.

Flow::

    Student (float, BatchNorm) ──quantize_student(calibration batches)──► QuantizedStudent
        ├── golden_forward / golden_invoke   (numpy integer reference: the specification)
        └── export_c                          (<name>.c, <name>.h, <name>_weights.h)

The jobs around it: :func:`distill_checkpoint` (teacher → student directory),
:func:`load_student` / :func:`save_student`, :func:`budget_report` (an MCU target),
:func:`degradation_report` (every sensor subset) and :func:`power_policy` (sensors to keep on
for a power budget).

On-device learning (TinyOL): the frozen int8 embedding feeds an :class:`OnlineClassifier` or an
:class:`OnlineAutoencoder` trained per sample in RAM (:mod:`fusion.deploy.online`), replayed on
recorded streams with injected drift (:func:`replay`) and exported as C (:func:`export_online_c`).
"""

from fusion.deploy.budget import BudgetReport, Target, budget_report, parse_target
from fusion.deploy.c_export import CExport, export_c
from fusion.deploy.degradation import DegradationReport, degradation_report
from fusion.deploy.distill import DistillConfig, distill, distill_checkpoint
from fusion.deploy.errors import (
    DeployError,
    NoStreamPresentError,
    QuantisationError,
    StudentConfigError,
    StudentInputError,
)
from fusion.deploy.golden import golden_forward, golden_invoke
from fusion.deploy.int8 import (
    ArenaPlan,
    QConv,
    QParams,
    QPool,
    QStem,
    QuantizedStudent,
    quantize_student,
)
from fusion.deploy.online import OnlineAutoencoder, OnlineClassifier, OnlineNormaliser
from fusion.deploy.online_c import export_online_c
from fusion.deploy.power import PowerModel, PowerPolicy, load_power, power_policy
from fusion.deploy.replay import ReplayConfig, ReplayReport, replay
from fusion.deploy.student import StemConfig, Student, StudentConfig
from fusion.deploy.student_io import StudentBundle, load_student, save_student

__all__ = [
    "ArenaPlan",
    "BudgetReport",
    "CExport",
    "DegradationReport",
    "DeployError",
    "DistillConfig",
    "NoStreamPresentError",
    "OnlineAutoencoder",
    "OnlineClassifier",
    "OnlineNormaliser",
    "PowerModel",
    "PowerPolicy",
    "QConv",
    "QParams",
    "QPool",
    "QStem",
    "QuantisationError",
    "QuantizedStudent",
    "ReplayConfig",
    "ReplayReport",
    "StemConfig",
    "Student",
    "StudentBundle",
    "StudentConfig",
    "StudentConfigError",
    "StudentInputError",
    "Target",
    "budget_report",
    "degradation_report",
    "distill",
    "distill_checkpoint",
    "export_c",
    "export_online_c",
    "golden_forward",
    "golden_invoke",
    "load_power",
    "load_student",
    "parse_target",
    "power_policy",
    "quantize_student",
    "replay",
    "save_student",
]
