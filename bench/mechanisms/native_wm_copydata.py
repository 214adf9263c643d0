"""The floor: a C sender and a C receiver, one SendMessageTimeoutW(WM_COPYDATA) per message."""

LABEL = "C WM_COPYDATA (floor)"
NOTE = ("plain Win32 C (bench/native/), message-only window, one SendMessageTimeoutW per message; the "
        "receiver copies the payload, answers with ReplyMessage, then checks it (as copydata's receiver "
        "answers once the payload is in its queue); payloads above 1 MiB in 1 MiB chunks")
NATIVE = ("wm_copydata_recv.exe", "wm_copydata_send.exe")
