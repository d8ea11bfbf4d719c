"""Training of the plate reader's learned parts, from synthetic plates only.

:mod:`training.render` draws plates as GA 36 lays them out and spoils them the way
roadside cameras do; :mod:`training.province` trains the province-character classifier
on them (PyTorch, imported by that script alone: torch is no runtime dependency);
:mod:`training.evaluate_province` measures it on real crops, all held out.
"""
