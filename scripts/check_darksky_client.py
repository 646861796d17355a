#!/usr/bin/env python3
"""Calls Raincast's Dark Sky compatible endpoint through an existing client.

The client is `pirate-weather-python` from PyPI (the Pirate Weather API
wrapper, which speaks the Dark Sky schema). It has no host setting, so a
subclass points its URL at Raincast; everything else (request, parsing into
its Forecast objects) is the library's own.

    python3 -m venv /tmp/ds-venv && /tmp/ds-venv/bin/pip install pirate-weather-python==0.0.6
    /tmp/ds-venv/bin/python scripts/check_darksky_client.py http://127.0.0.1:8080/ KEY 47.37 8.54

Exits non-zero, naming the problem, when the response does not parse or
lacks what a radar nowcast must give: `currently` with a time, and a
`minutely` block of 61 one-minute points, each with an intensity, its error
and a probability, in every unit system. A point whose rain would come from
outside the radar's view is unknown: it carries only its time (Dark Sky
leaves out unavailable values), and is counted, not failed.
"""

import sys

from pirate_weather.api import PirateWeather
from pirate_weather.types.units import Units


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    base, key, lat, lon = sys.argv[1].rstrip("/"), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

    class Raincast(PirateWeather):
        def get_url(self, latitude, longitude, time=None, **params):
            return super().get_url(latitude, longitude, time, api_version=f"{base}/forecast")

    client = Raincast(key)
    problems = []
    for units in (Units.AUTO, Units.SI, Units.US, Units.CA, Units.UK2):
        f = client.get_forecast(lat, lon, values_units=units)
        data = f.minutely.data
        print(f"units={units.value}: timezone={f.timezone} offset={f.offset} units={f.flags.units} "
              f"currently={f.currently.precip_intensity} minutely={len(data)} points, "
              f"summary={f.minutely.summary!r}")
        if f.currently.time is None:
            problems.append(f"{units.value}: currently.time missing")
        if len(data) != 61:
            problems.append(f"{units.value}: {len(data)} minutely points, not 61")
        unknown = 0
        for i, d in enumerate(data):
            values = (d.precip_intensity, d.precip_probability, d.precip_intensity_error)
            if d.time is None:
                problems.append(f"{units.value}: minutely point {i} has no time")
                break
            if all(v is None for v in values):
                unknown += 1
            elif any(v is None for v in values):
                problems.append(f"{units.value}: minutely point {i} is half known: {d.__dict__}")
                break
            if i and (d.time - data[i - 1].time) != 60:
                problems.append(f"{units.value}: points {i - 1} and {i} are not one minute apart")
                break
        if unknown:
            print(f"  ({unknown} points unknown: rain from outside the radar's view)")
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    print("OK: the pirate-weather-python client parsed every response" if not problems else "FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
