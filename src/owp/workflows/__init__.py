"""What the ``owp`` commands do beyond one library call: they compose engine, evaluation and viz
(demo, study, bench, predict, evaluate, export, pseudo labels, baselines)."""
