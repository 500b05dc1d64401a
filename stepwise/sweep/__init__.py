"""Running a hyperparameter sweep, as pure functions: sampling trials' parameters, early
termination, picking the best trial. The worker's driver (runs/sweep_driver.py) calls them."""
