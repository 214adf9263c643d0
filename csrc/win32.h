/* Every C file of the core includes Windows through here, so that all see one API level. */
#ifndef COPYDATA_WIN32_H
#define COPYDATA_WIN32_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601 /* Windows 7: ChangeWindowMessageFilterEx */
#endif
#include <windows.h>

#endif
