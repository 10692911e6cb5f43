"""FCOS-OWP, the one-stage open-world proposal model: config, model, head, anchor points,
assignment, training targets, unknown-object masking, losses and postprocessing."""
