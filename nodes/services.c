/*
 * The table of shipped services and the argument helpers they share.
 */
#include "services.h"

#include <string.h>

#define SERVICES_DEFAULT_PAGE_SIZE 100

const pip_service_def *const pip_services_all[] = {
    &pip_discovery_service,
    &pip_logging_service,
    &pip_counters_service,
    &pip_settings_service,
    NULL,
};

const pip_service_def *
pip_services_find(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; pip_services_all[i] != NULL; i++) {
        if (strcmp(pip_services_all[i]->name, name) == 0) {
            return pip_services_all[i];
        }
    }
    return NULL;
}

static bool
services_filter_given(const json_t *filter, const char *key)
{
    const json_t *value;

    if (!json_is_object(filter)) {
        return false;
    }
    value = json_object_get(filter, key);
    return value != NULL && !json_is_null(value);
}

static int
services_filter_invalid(pip_error *err, const char *key, const char *expected)
{
    pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_DATA",
                  "Invalid argument 'filter.%s': expected %s.", key, expected);
    pip_error_detail(err, "argument", json_sprintf("filter.%s", key));
    pip_error_detail(err, "expected", json_string(expected));
    return PIP_E_BAD_REQUEST;
}

int
pip_services_filter_int(const json_t *filter, const char *key, bool *present,
                        int64_t *value, pip_error *err)
{
    *present = services_filter_given(filter, key);
    if (!*present) {
        return PIP_OK;
    }
    if (!pip_filter_int(filter, key, value)) {
        return services_filter_invalid(err, key, "integer");
    }
    return PIP_OK;
}

int
pip_services_filter_bool(const json_t *filter, const char *key, bool *present,
                         bool *value, pip_error *err)
{
    *present = services_filter_given(filter, key);
    if (!*present) {
        return PIP_OK;
    }
    if (!pip_filter_bool(filter, key, value)) {
        return services_filter_invalid(err, key, "boolean");
    }
    return PIP_OK;
}

int
pip_services_filter_time(const json_t *filter, const char *key, bool *present,
                         int64_t *ms, pip_error *err)
{
    *present = services_filter_given(filter, key);
    if (!*present) {
        return PIP_OK;
    }
    if (!pip_filter_time(filter, key, ms)) {
        return services_filter_invalid(err, key, "datetime");
    }
    return PIP_OK;
}

int
pip_services_filter_string(const json_t *filter, const char *key,
                           const char **value, pip_error *err)
{
    *value = NULL;
    if (!services_filter_given(filter, key)) {
        return PIP_OK;
    }
    if (!pip_filter_string(filter, key, value)) {
        return services_filter_invalid(err, key, "string");
    }
    return PIP_OK;
}

int
pip_services_paging(pip_service *svc, const json_t *args, pip_paging *paging,
                    pip_error *err)
{
    int64_t max_page_size;

    max_page_size = pip_service_config_int(svc, "options.max_page_size",
                                           SERVICES_DEFAULT_PAGE_SIZE);
    if (max_page_size < 1) {
        max_page_size = SERVICES_DEFAULT_PAGE_SIZE;
    }
    return pip_paging_parse(json_object_get(args, "paging"), max_page_size,
                            paging, err);
}

bool
pip_services_field_contains(const json_t *record, const char *key,
                            const char *needle)
{
    const char *text = json_string_value(json_object_get(record, key));

    return text != NULL && pip_text_contains(text, needle);
}

int
pip_services_set(json_t *obj, const char *key, json_t *value, pip_error *err)
{
    if (value == NULL || json_object_set_new(obj, key, value) != 0) {
        return pip_error_set(err, PIP_E_INTERNAL, "OUT_OF_MEMORY",
                             "Out of memory while setting %s.", key);
    }
    return PIP_OK;
}
