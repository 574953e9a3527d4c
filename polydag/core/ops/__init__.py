"""Machine and file plumbing every domain uses: where files live (``paths``), content hashes
(``hashing``), atomic directory writes (``atomic_dir``), JSON-safe values (``jsonable``), CPU
threads and CUDA devices (``cpu_threads``, ``devices``), and the machine checks of
``polydag doctor`` (``doctor``)."""
