"""The shipped run presets (``owp presets``), one YAML file per preset, named by its stem.

``synth/``, ``coco-voc/`` and ``lvis/`` hold the presets of each dataset; ``_base/`` the blocks
they share (dataset files, schedules), which are not presets. A file builds on others with
``_base_`` (:func:`owp.config.read_yaml_with_bases`): a row of a paper table on the row it
extends, each family on its ``_base/`` file. ``groups.yaml`` names the study groups.
"""
