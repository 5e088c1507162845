"""The running process: settings, the composition root (``App``) and each process's lifecycle
(``serve``, ``serve --workers N``, ``worker``, the demo), reload and the heap."""
