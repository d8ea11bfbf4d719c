"""overload: the law layer of zhichao — limits, axle codes, tolerance and grading.

Every legal number lives in the rule tables under ``config/rules/`` (each row with an id and
a source); this package reads them (:func:`load_rules`) and applies them. It imports nothing
from the roadside, the center or the drivers.

Examples
--------
>>> from overload import grade, load_rules
>>> grade("157", 55400, load_rules()).fine_yuan
3000.0
"""

from overload.applied import AppliedRule
from overload.axles import AxleCheck, check_axle_loads
from overload.calendar import Calendar, Reckoning, is_working_day, period_end
from overload.codes import (
    AxleCode,
    AxleGroup,
    axle_code_from_axles,
    parse_axle_code,
    tyre_from_width,
)
from overload.dimensions import check_dimensions
from overload.errors import RuleError
from overload.grading import GradeTable, grade, grade_many
from overload.limits import Limit, vehicle_limit
from overload.procedure import Due, Procedure
from overload.results import DimensionCheck, Grade
from overload.rulebook import RuleBook, load_rules

__all__ = [
    "AppliedRule",
    "AxleCheck",
    "AxleCode",
    "AxleGroup",
    "Calendar",
    "DimensionCheck",
    "Due",
    "Grade",
    "GradeTable",
    "Limit",
    "Procedure",
    "Reckoning",
    "RuleBook",
    "RuleError",
    "axle_code_from_axles",
    "check_axle_loads",
    "check_dimensions",
    "grade",
    "grade_many",
    "is_working_day",
    "load_rules",
    "parse_axle_code",
    "period_end",
    "tyre_from_width",
    "vehicle_limit",
]
