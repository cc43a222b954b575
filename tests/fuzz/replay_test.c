/*
 * Replays every file of tests/fuzz/corpus/<target>/ and
 * tests/fuzz/regressions/<target>/ through the invariant checks of the fuzz
 * targets, so the normal builds check them without clang.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_checks.h"

typedef void (*replay_check_fn)(const uint8_t *data, size_t size);

/* The file being replayed, named when an invariant fails. */
static char replay_current[1024];

_Noreturn void
fuzz_invariant_failed(const char *expr, const char *file, int line)
{
    print_error("invariant failed on input %s: %s\n", replay_current, expr);
    _fail(file, line);
    abort(); /* _fail() jumps back into cmocka and never gets here */
}

/* Reads a whole file into a new buffer, or returns NULL when that fails. */
static uint8_t *
replay_read(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    struct stat st;
    uint8_t *data = NULL;

    if (file == NULL) {
        return NULL;
    }
    if (fstat(fileno(file), &st) == 0) {
        /* One spare byte, so an empty file still gets a buffer. */
        data = malloc((size_t)st.st_size + 1);
    }
    if (data != NULL &&
        fread(data, 1, (size_t)st.st_size, file) != (size_t)st.st_size) {
        free(data);
        data = NULL;
    }
    fclose(file);
    *size = data ? (size_t)st.st_size : 0;
    return data;
}

/* Replays the files of PIP_FUZZ_DIR/kind/target and returns their count.
 * A missing folder counts as empty. */
static size_t
replay_folder(const char *kind, const char *target, replay_check_fn check)
{
    char folder[512];
    struct dirent *entry;
    size_t count = 0;
    DIR *dir;

    snprintf(folder, sizeof(folder), "%s/%s/%s", PIP_FUZZ_DIR, kind, target);
    dir = opendir(folder);
    if (dir == NULL) {
        return 0;
    }
    while ((entry = readdir(dir)) != NULL) {
        uint8_t *data;
        size_t size = 0;

        if (entry->d_name[0] == '.') {
            continue;
        }
        snprintf(replay_current, sizeof(replay_current), "%s/%s", folder,
                 entry->d_name);
        data = replay_read(replay_current, &size);
        assert_non_null(data);
        check(data, size);
        free(data);
        count++;
    }
    closedir(dir);
    return count;
}

static void
replay_target(const char *target, replay_check_fn check)
{
    size_t seeds = replay_folder("corpus", target, check);

    replay_folder("regressions", target, check);
    assert_true(seeds > 0);
}

static void
replay_envelope(void **state)
{
    (void)state;
    replay_target("envelope", fuzz_check_envelope);
}

static void
replay_schema(void **state)
{
    (void)state;
    replay_target("schema", fuzz_check_schema);
}

static void
replay_bridge(void **state)
{
    (void)state;
    replay_target("bridge", fuzz_check_bridge);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(replay_envelope),
        cmocka_unit_test(replay_schema),
        cmocka_unit_test(replay_bridge),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
