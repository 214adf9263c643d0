"""The physical limit: memcpy of the same payloads within one process (C)."""

LABEL = "memcpy (1 process)"
NOTE = "C memcpy between two buffers in one process: the machine's limit, not IPC"
LOCAL = "memcpy_bandwidth.exe"
