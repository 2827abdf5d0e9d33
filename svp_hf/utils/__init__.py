"""Run-time utilities every stage shares: logging (``log``), progress bars (``progress``), the device and process
settings Accelerate runs with (``device``) and the CPU's precision features (``precision``)."""
