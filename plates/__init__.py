"""The plate reader of the roadside unit: frames in, plate text, colour, confidence, box
and crop out, or "unreadable".

- :mod:`plates.engines`: the PP-OCRv4 detector and recogniser on ONNX Runtime
  (default) or PaddlePaddle, model files from installed packages only;
- :mod:`plates.locate`: candidate regions from plate paint and text lines;
- :mod:`plates.colour`: plate colour from pixels;
- :mod:`plates.decode`: recogniser scores → the best reading GA 36 allows;
- :mod:`plates.reader`: all of it per frame, per vehicle (vote), front against rear.

The grammar itself is law, so it lives with the law: :mod:`overload.plates` and
``config/rules/plates.yaml``.
"""

from plates.engines import ENGINES, EngineName, PlateEngineError, load_engine
from plates.reader import (
    FrontRear,
    PlateImageError,
    PlateReader,
    PlateReading,
    ReaderOptions,
    VehicleReading,
    compare_front_rear,
    load_image,
    vote,
)

__all__ = [
    "ENGINES",
    "EngineName",
    "FrontRear",
    "PlateEngineError",
    "PlateImageError",
    "PlateReader",
    "PlateReading",
    "ReaderOptions",
    "VehicleReading",
    "compare_front_rear",
    "load_engine",
    "load_image",
    "vote",
]
