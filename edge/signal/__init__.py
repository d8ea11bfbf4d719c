"""The signal hot loop: strip-sensor samples in, weighed and classified vehicles out.

Stages, in the order the data flows (each a module):

``pulses``    baseline, hysteresis detection, areas, sub-sample edges (stream stage)
``lanes``     wheels running over a lane boundary given to the lane of their axle
``axles``     halves paired, rows matched, speeds and area-method loads (pure functions)
``tyres``     single, wide-base or dual, from the load per contact length
``vehicles``  axles split into vehicles, flagged and coded (stream stage)
``loop``      guards the input and ties the stages together: :class:`SignalLoop`
"""
