/*
 * Helpers shared by the cmocka test programs.  Header-only, because the
 * fixtures that use it are headers included by one test file each.
 * Include it before any system header: nftw() is an X/Open extension.
 */
#ifndef PIP_TEST_UTIL_H
#define PIP_TEST_UTIL_H

#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int
test_util_remove_entry(const char *path, const struct stat *sb, int flag,
                       struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything below it; symbolic links are not followed. */
static inline void
test_util_remove_tree(const char *dir)
{
    nftw(dir, test_util_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
