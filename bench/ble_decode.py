"""BTHome advertisements through the scanner's detection callback: throughput, CPU, memory.

Frames of simulated Shelly BLU Door/Window sensors (half of them encrypted, every frame new)
are fed to ``BleScanner.handle`` as bleak's own ``BLEDevice`` / ``AdvertisementData``, the
boundary where bleak's BlueZ backend calls it. Baseline, in the same run: a callback that only
looks the service data and the address up, what any BTHome receiver has to do.

Prints:
- advertisements handled per second, plain and encrypted, and the cost against the baseline;
- the process CPU while 100 sensors advertise once a second each (paced in real time);
- memory per tracked sensor (tracemalloc, 1000 sensors, one frame each);
- the resident memory that importing the BLE stack (bleak, bthome-ble) adds.

    .venv/bin/python bench/ble_decode.py [--frames 20000] [--paced-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames per throughput run")
    parser.add_argument("--paced-s", type=float, default=10.0, help="seconds of the paced run")
    parser.add_argument("--sensors", type=int, default=100, help="sensors in the paced run")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # refusals would be logged; none are expected

    before = rss_mb()
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from firmware_bridge.ble.bthome import BTHOME_UUID
    from firmware_bridge.ble.scanner import BleScanner
    from firmware_bridge.ble.tracker import SensorSpec
    from sim.bthome import SimulatedDoorSensor

    imported = rss_mb()

    key = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")

    def fleet(n: int, encrypted: bool) -> list[SimulatedDoorSensor]:
        return [
            SimulatedDoorSensor(
                mac=f"A4:C1:38:{i >> 16 & 0xFF:02X}:{i >> 8 & 0xFF:02X}:{i & 0xFF:02X}",
                bind_key=key if encrypted else None,
                seed=i,
                repeat_interval_s=1.0,
                open_every_s=120.0,
                first_counter=1000,
            )
            for i in range(n)
        ]

    def frames(
        sensors: list[SimulatedDoorSensor], count: int
    ) -> list[tuple[BLEDevice, AdvertisementData]]:
        out: list[tuple[BLEDevice, AdvertisementData]] = []
        t = 0.5
        while len(out) < count:
            for sensor in sensors:
                data = sensor.advertise(t)
                if data is None:
                    continue
                device = BLEDevice(sensor.mac, sensor.name, None)
                adv = AdvertisementData(
                    sensor.name, {}, {BTHOME_UUID: data}, [BTHOME_UUID], None, -60, ()
                )
                out.append((device, adv))
            t += 1.0
        return out[:count]

    def scanner_for(sensors: list[SimulatedDoorSensor]) -> BleScanner:
        specs = [SensorSpec(f"door-{i}", s.mac, s.bind_key) for i, s in enumerate(sensors)]
        return BleScanner(specs, lambda *_: None)

    def baseline(device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.service_data.get(BTHOME_UUID)
        if data is not None:
            _ = device.address.upper()

    def rate(
        make: Callable[[], Callable[[BLEDevice, AdvertisementData], None]],
        feed: list[tuple[BLEDevice, AdvertisementData]],
    ) -> float:
        """Median ads/s of 3 runs, each with a fresh callback (every frame new to it)."""
        runs = []
        for _ in range(3):
            callback = make()
            start = time.perf_counter()
            for device, adv in feed:
                callback(device, adv)
            runs.append(len(feed) / (time.perf_counter() - start))
        return statistics.median(runs)

    print(f"BTHome decoding through BleScanner.handle, {args.frames} frames per run (median of 3)")
    results = {}
    for label, encrypted in (("plain", False), ("encrypted", True)):
        sensors = fleet(args.sensors, encrypted)
        feed = frames(sensors, args.frames)
        base = rate(lambda: baseline, feed)
        handled = rate(lambda fleet=sensors: scanner_for(fleet).handle, feed)  # type: ignore[misc]
        scanner = scanner_for(sensors)
        for device, adv in feed:
            scanner.handle(device, adv)
        status = scanner.status()
        results[label] = handled
        print(
            f"  {label:<9}  {handled:>9,.0f} ads/s  ({1e6 / handled:.0f} us each);"
            f" baseline {base:>11,.0f} ads/s; cost x{base / handled:,.0f};"
            f" accepted {status.frames}, refused {dict(status.rejected)}"
        )

    async def paced() -> tuple[float, int]:
        """The frames are made beforehand: only the scanner's work is in the CPU figure."""
        sensors = fleet(args.sensors, True)
        seconds = max(1, round(args.paced_s))
        feed = frames(sensors, args.sensors * seconds)
        scanner = scanner_for(sensors)
        t0_wall = time.monotonic()
        t0_cpu = time.process_time()
        for second in range(seconds):
            for device, adv in feed[second * args.sensors : (second + 1) * args.sensors]:
                scanner.handle(device, adv)
            await asyncio.sleep(max(0.0, t0_wall + second + 1 - time.monotonic()))
        cpu = time.process_time() - t0_cpu
        return cpu / (time.monotonic() - t0_wall), scanner.status().frames

    share, fed = asyncio.run(paced())
    print(
        f"paced: {args.sensors} encrypted sensors at 1 frame/s for {args.paced_s:.0f} s"
        f" ({fed} frames): process CPU {share * 100:.2f} % of one core"
        f" (predicted from the throughput: {args.sensors / results['encrypted'] * 100:.2f} %)"
    )

    gc.collect()
    tracemalloc.start()
    empty = scanner_for([])
    base_bytes = tracemalloc.get_traced_memory()[0]
    many = fleet(1000, True)
    scanner = scanner_for(many)
    for device, adv in frames(many, 1000):
        scanner.handle(device, adv)
    del many
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base_bytes
    tracemalloc.stop()
    del empty
    print(
        f"memory: {used / 1000 / 1024:.1f} KiB per tracked sensor"
        f" (1000 sensors, one frame each; the simulator's objects excluded)"
    )
    print(f"importing bleak + bthome-ble + the scanner adds {imported - before:.1f} MB resident")


if __name__ == "__main__":
    main()
