"""The vehicles a Chinese freight road sees, as data for the traffic simulator.

Each class is a vehicle design: its axle-type code, axle spacings (ranges drawn
uniformly), tyres per axle, empty axle loads and how payload spreads over the axles,
the rated gross mass its payload is scaled against, speeds and track width. These are
vehicle properties, not law: the limits the law sets live in ``config/rules``.

Tyre kinds: ``single`` (one ordinary tyre a side), ``wide_base`` (one wide tyre a side,
≥ 425 mm), ``dual`` (two tyres a side). Contact-patch widths per side follow from them.
"""

from dataclasses import dataclass

TYRE_WIDTH_M: dict[str, float] = {"single": 0.25, "wide_base": 0.36, "dual": 0.46}
"""Total width of the tyre contact on one side of an axle, by tyre kind."""

CAR_TYRE_WIDTH_M = 0.20


@dataclass(frozen=True)
class VehicleClass:
    """One vehicle design of the traffic mix."""

    name: str
    code: str
    share: float
    spacings_m: tuple[tuple[float, float], ...]
    tyres: tuple[str, ...]
    empty_axle_kg: tuple[float, ...]
    payload_share: tuple[float, ...]
    rated_kg: float
    speed_kmh: tuple[float, float] = (55.0, 90.0)
    track_m: float = 1.95
    tyre_pressure_kpa: float = 830.0
    is_car: bool = False

    @property
    def n_axles(self) -> int:
        """Number of axles of this design."""
        return len(self.tyres)


_TANDEM = (1.30, 1.40)
_TRIDEM = (1.31, 1.36)
_TWIN_STEER = (2.10, 2.40)

FLEET: tuple[VehicleClass, ...] = (
    VehicleClass("car", "11", 0.30, ((2.5, 2.9),), ("single", "single"), (800, 700),
                 (0.4, 0.6), 2_000, (80, 120), 1.55, 230, is_car=True),
    VehicleClass("2-axle truck", "12", 0.14, ((3.3, 4.5),), ("single", "dual"),
                 (3_500, 2_500), (0.3, 0.7), 18_000, (60, 95)),
    VehicleClass("3-axle truck", "15", 0.06, ((3.8, 4.8), _TANDEM),
                 ("single", "dual", "dual"), (5_000, 3_500, 3_500), (0.15, 0.425, 0.425),
                 25_000),
    VehicleClass("3-axle twin-steer truck", "112", 0.03, (_TWIN_STEER, (3.4, 4.2)),
                 ("single", "single", "dual"), (4_500, 4_000, 4_000), (0.2, 0.2, 0.6),
                 25_000),
    VehicleClass("4-axle truck", "115", 0.06, (_TWIN_STEER, (3.6, 4.6), _TANDEM),
                 ("single", "single", "dual", "dual"), (4_500, 4_500, 3_500, 3_500),
                 (0.15, 0.15, 0.35, 0.35), 31_000),
    VehicleClass("4-axle semi-trailer", "125", 0.04, ((3.4, 3.8), (6.5, 7.5), _TANDEM),
                 ("single", "dual", "dual", "dual"), (5_000, 4_500, 3_000, 3_000),
                 (0.05, 0.35, 0.3, 0.3), 36_000),
    VehicleClass("5-axle semi-trailer", "127", 0.05,
                 ((3.4, 3.8), (7.0, 7.8), _TRIDEM, _TRIDEM),
                 ("single", "dual", "dual", "dual", "dual"),
                 (5_500, 5_000, 2_500, 2_500, 2_500), (0.05, 0.26, 0.23, 0.23, 0.23), 43_000),
    VehicleClass("5-axle semi-trailer, wide-base", "129", 0.02,
                 ((3.4, 3.8), (7.0, 7.8), _TRIDEM, _TRIDEM),
                 ("single", "dual", "wide_base", "wide_base", "wide_base"),
                 (5_500, 5_000, 2_500, 2_500, 2_500), (0.05, 0.26, 0.23, 0.23, 0.23), 43_000),
    VehicleClass("5-axle semi-trailer, tandem", "155", 0.04,
                 ((3.0, 3.4), _TANDEM, (6.0, 7.0), _TANDEM),
                 ("single", "dual", "dual", "dual", "dual"),
                 (5_500, 3_500, 3_500, 3_000, 3_000), (0.04, 0.24, 0.24, 0.24, 0.24), 43_000),
    VehicleClass("6-axle semi-trailer 6x4", "157", 0.20,
                 ((3.0, 3.4), _TANDEM, (6.5, 7.5), _TRIDEM, _TRIDEM),
                 ("single", "dual", "dual", "dual", "dual", "dual"),
                 (6_000, 3_500, 3_500, 2_500, 2_500, 2_500),
                 (0.03, 0.19, 0.19, 0.197, 0.197, 0.196), 49_000),
    VehicleClass("6-axle semi-trailer 6x4, wide-base", "159", 0.03,
                 ((3.0, 3.4), _TANDEM, (6.5, 7.5), _TRIDEM, _TRIDEM),
                 ("single", "dual", "dual", "wide_base", "wide_base", "wide_base"),
                 (6_000, 3_500, 3_500, 2_500, 2_500, 2_500),
                 (0.03, 0.19, 0.19, 0.197, 0.197, 0.196), 49_000),
    VehicleClass("6-axle semi-trailer 6x2", "1127", 0.03,
                 (_TWIN_STEER, (2.8, 3.2), (6.5, 7.5), _TRIDEM, _TRIDEM),
                 ("single", "single", "dual", "dual", "dual", "dual"),
                 (5_000, 4_000, 4_000, 2_500, 2_500, 2_500),
                 (0.05, 0.1, 0.2, 0.22, 0.22, 0.21), 46_000),
)

