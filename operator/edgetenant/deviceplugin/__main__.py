"""python -m edgetenant.deviceplugin --resource <domain>/<name> --slots N [--plugin-dir DIR]"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from edgetenant.deviceplugin import api
from edgetenant.deviceplugin.server import DevicePlugin
from edgetenant.deviceplugin.slots import SlotError, Slots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgetenant.deviceplugin", description=__doc__)
    parser.add_argument(
        "--resource", required=True, help="extended resource name, e.g. edgetenant.io/cpu-slot"
    )
    parser.add_argument("--slots", type=int, required=True, help="how many tenants may share the device")
    parser.add_argument("--plugin-dir", type=Path, default=Path(api.DEFAULT_PLUGIN_DIR))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        slots = Slots(args.resource, args.slots)
    except SlotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.plugin_dir.is_dir():
        print(
            f"error: {args.plugin_dir} is not a directory (mount the kubelet's device-plugin directory)",
            file=sys.stderr,
        )
        return 2
    plugin = DevicePlugin(slots, args.plugin_dir)
    signal.signal(signal.SIGTERM, lambda *_: plugin.stop())
    signal.signal(signal.SIGINT, lambda *_: plugin.stop())
    plugin.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
