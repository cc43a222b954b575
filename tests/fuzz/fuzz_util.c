/* Helpers shared by the invariant checks of the fuzz targets. */
#include "fuzz_util.h"

#include <stdint.h>
#include <string.h>

#include "fuzz_checks.h"

void
fuzz_limits_relaxed(pip_limits *lim)
{
    pip_limits_default(lim);
    lim->max_msg_bytes = SIZE_MAX;
    lim->max_str_bytes = UINT32_MAX;
    lim->max_array_len = UINT32_MAX;
    lim->max_map_len = UINT32_MAX;
    lim->max_batch = UINT32_MAX;
}

void
fuzz_limits_tight(pip_limits *lim)
{
    lim->max_msg_bytes = 512;
    lim->max_depth = 6;
    lim->max_str_bytes = 32;
    lim->max_array_len = 8;
    lim->max_map_len = 8;
    lim->max_batch = 4;
}

/* Codes are upper-case words joined by underscores, such as INVALID_DATA. */
static bool
fuzz_is_code(const char *code)
{
    if (code[0] == '\0') {
        return false;
    }
    for (const char *c = code; *c != '\0'; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_')) {
            return false;
        }
    }
    return true;
}

void
fuzz_check_error(int rv, const pip_error *err)
{
    FUZZ_CHECK(rv != PIP_OK);
    FUZZ_CHECK((int)err->category == rv);
    FUZZ_CHECK(fuzz_is_code(err->code));
    FUZZ_CHECK(err->message[0] != '\0');
    FUZZ_CHECK(fuzz_is_utf8(err->message));
    FUZZ_CHECK(err->details == NULL || json_is_object(err->details));
}

bool
fuzz_code_in(const char *code, const char *const *codes)
{
    for (size_t i = 0; codes[i] != NULL; i++) {
        if (strcmp(code, codes[i]) == 0) {
            return true;
        }
    }
    return false;
}

bool
fuzz_is_utf8(const char *text)
{
    json_t *value = json_string(text);

    json_decref(value);
    return value != NULL;
}

bool
fuzz_json_same(const json_t *a, const json_t *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return json_equal(a, b) != 0;
}

size_t
fuzz_json_nesting(const json_t *value)
{
    size_t deepest = 0;
    size_t nesting;
    const char *key;
    json_t *item;
    size_t index;

    if (json_is_array(value)) {
        json_array_foreach(value, index, item)
        {
            nesting = fuzz_json_nesting(item);
            deepest = nesting > deepest ? nesting : deepest;
        }
        return deepest + 1;
    }
    if (json_is_object(value)) {
        json_object_foreach((json_t *)value, key, item)
        {
            nesting = fuzz_json_nesting(item);
            deepest = nesting > deepest ? nesting : deepest;
        }
        return deepest + 1;
    }
    return 0;
}

void
fuzz_pack_json(msgpack_sbuffer *sbuf, const json_t *value)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sbuf);
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    FUZZ_CHECK(pip_json_pack(&pk, value) == 0);
}

bool
fuzz_bytes_same(const msgpack_sbuffer *a, const msgpack_sbuffer *b)
{
    return a->size == b->size &&
           (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}
