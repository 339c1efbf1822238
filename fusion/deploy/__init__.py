"""Deploy: a microcontroller-sized student, full-int8 quantisation, a numpy golden model and a
portable C99 export that matches it bit for bit.

Flow::

    Student (float, BatchNorm) ──quantize_student(calibration batches)──► QuantizedStudent
        ├── golden_forward / golden_invoke   (numpy integer reference: the specification)
        └── export_c                          (<name>.c, <name>.h, <name>_weights.h)
"""

from fusion.deploy.c_export import CExport, export_c
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
from fusion.deploy.student import StemConfig, Student, StudentConfig

__all__ = [
    "ArenaPlan",
    "CExport",
    "DeployError",
    "NoStreamPresentError",
    "QConv",
    "QParams",
    "QPool",
    "QStem",
    "QuantisationError",
    "QuantizedStudent",
    "StemConfig",
    "Student",
    "StudentConfig",
    "StudentConfigError",
    "StudentInputError",
    "export_c",
    "golden_forward",
    "golden_invoke",
    "quantize_student",
]
