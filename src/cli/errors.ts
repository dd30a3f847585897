// Exit codes shared by every command: 0 ok, 1 fraud or invalid data, 2 usage or input error,
// 130 interrupted (SIGINT) after writing what was computed.
export const EXIT_OK = 0;
export const EXIT_INVALID = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;
