"""What commands do beyond one library call: demo, study, bench, predict, report."""
