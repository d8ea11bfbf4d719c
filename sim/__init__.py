"""A physically based weigh-in-motion simulator, the twin of a strip-sensor site.

``fleet`` (vehicle designs) → ``traffic`` (who passes, when, how loaded and driven) →
``render`` (int16 samples per digitiser channel) → ``score`` (measurements against the
truth). Used by the demo, the tests and the benchmarks; imports no roadside or center
code, so it can judge them.
"""
