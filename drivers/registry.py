"""Which driver serves which kind of device section: a name → factory table, as Klipper's.

A site's edge settings list its devices by name, each section with a ``kind``:

.. code-block:: yaml

    devices:
      digitiser:  {kind: serial, protocol: digitiser, port: /dev/ttyUSB0, baudrate: 921600}
      controller: {kind: modbus, url: "tcp://192.0.2.10:502", register_map: wim_map.yaml}
      front:      {kind: camera, url: "rtsp://192.0.2.20/stream1", offset_s: 0.04}
      pavement:   {kind: temperature, url: "rtu:///dev/ttyUSB1?baud=9600", register: 0}

Each kind's module validates its own options, so an error names the device, the option
and the value; an unknown kind names the ones there are.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from drivers.base import Device
from drivers.camera import camera_from_config
from drivers.camera_process import ProcessCamera
from drivers.modbus_wim import ModbusWimDevice, ModbusWimSettings
from drivers.serial_link import SerialDevice
from drivers.temperature import TemperatureProbe, TemperatureProbeSettings
from zhichao.errors import ConfigError
from zhichao.settings import validate

Factory = Callable[[str, Mapping[str, Any], str, Path | None], Device]


def _serial(name: str, section: Mapping[str, Any], source: str, base_dir: Path | None
            ) -> Device:
    """A serial device: digitiser frames, WIM records or a scale indicator."""
    return SerialDevice.from_config(name, dict(section), source)


def _modbus(name: str, section: Mapping[str, Any], source: str, base_dir: Path | None
            ) -> Device:
    """A WIM controller polled over Modbus; its map path is relative to the settings."""
    settings = validate(ModbusWimSettings, {"name": name, **section}, source,
                        prefix=f"devices.{name}")
    return ModbusWimDevice.from_settings(settings, base_dir)


def _camera(name: str, section: Mapping[str, Any], source: str, base_dir: Path | None
            ) -> Device:
    """A camera read into a frame ring: in a process of its own unless its settings say
    ``process: false``."""
    camera = camera_from_config(name, section, where=f"devices.{name}", source=source)
    return ProcessCamera(name, camera.settings) if camera.settings.process else camera


def _temperature(name: str, section: Mapping[str, Any], source: str, base_dir: Path | None
                 ) -> Device:
    """A pavement temperature probe on a Modbus transmitter or I/O module."""
    settings = validate(TemperatureProbeSettings, {"name": name, **section}, source,
                        prefix=f"devices.{name}")
    return TemperatureProbe.from_settings(settings)


KINDS: dict[str, Factory] = {"serial": _serial, "modbus": _modbus, "camera": _camera,
                             "temperature": _temperature}


def open_device(name: str, section: Mapping[str, Any], *, source: str = "settings",
                base_dir: Path | None = None) -> Device:
    """The driver for one device section (not started).

    Examples
    --------
    >>> open_device("scale", {"kind": "scale"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zhichao.errors.ConfigError: settings: option 'devices.scale.kind' must be one of ...
    """
    kind = section.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # a list or map is no kind
        raise ConfigError(f"{source}: option 'devices.{name}.kind' must be one of "
                          f"{', '.join(sorted(KINDS))} (got {kind!r})")
    options = {k: v for k, v in section.items() if k != "kind"}
    return KINDS[kind](name, options, source, base_dir)
