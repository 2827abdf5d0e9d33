"""Run-time utilities every stage shares: logging (``log``), progress bars (``progress``), the device and process
settings Accelerate runs with (``device``), the CPU's precision features (``precision``) and how numbers are written
into messages (``formatting``)."""
