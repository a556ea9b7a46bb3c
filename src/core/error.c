/*
 * error.c - names and messages of the error codes in SL_ERRNO_MAP.
 */
#include "sluice.h"

const char *sl_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define X(name, value, msg)                                                                        \
    case value:                                                                                    \
        return msg;
        SL_ERRNO_MAP(X)
#undef X
    }
    return "unknown error";
}

const char *sl_err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
#define X(name, value, msg)                                                                        \
    case value:                                                                                    \
        return #name;
        SL_ERRNO_MAP(X)
#undef X
    }
    return "UNKNOWN";
}
