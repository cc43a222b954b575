/*
 * The services that ship with pip, found by name so that one program
 * (pipnode) can host any set of them, and the argument helpers that these
 * services share.
 */
#ifndef PIP_SERVICES_H
#define PIP_SERVICES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "pip/crud.h"
#include "pip/discovery.h"
#include "pip/error.h"
#include "pip/service.h"
#include "pip/store.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const pip_service_def pip_logging_service;
extern const pip_service_def pip_counters_service;
extern const pip_service_def pip_settings_service;

/* Every shipped service, discovery included, ended by NULL. */
extern const pip_service_def *const pip_services_all[];

/* The service named name ("counters"), or NULL when none has that name. */
const pip_service_def *pip_services_find(const char *name);

/*
 * Helpers for the shipped services.  The reads of optional filter values
 * return PIP_OK with *present false when the key is missing or null, and
 * PIP_E_BAD_REQUEST INVALID_DATA naming "filter.<key>" when the value is
 * given but does not convert to the type.
 */
int pip_services_filter_int(const json_t *filter, const char *key,
                            bool *present, int64_t *value, pip_error *err);
int pip_services_filter_bool(const json_t *filter, const char *key,
                             bool *present, bool *value, pip_error *err);
int pip_services_filter_time(const json_t *filter, const char *key,
                             bool *present, int64_t *ms, pip_error *err);
/* A string filter value, converted as pip_filter_string() does. */
int pip_services_filter_string(const json_t *filter, const char *key,
                               const char **value, pip_error *err);

/*
 * Reads args["paging"] with the service's options.max_page_size, which is
 * 100 when missing or below 1.
 */
int pip_services_paging(pip_service *svc, const json_t *args,
                        pip_paging *paging, pip_error *err);

/*
 * Sets obj[key] = value and steals value.  A NULL value (a failed
 * allocation) or a failed insert gives PIP_E_INTERNAL OUT_OF_MEMORY.
 */
int pip_services_set(json_t *obj, const char *key, json_t *value,
                     pip_error *err);

/* True when the record's string field `key` contains needle, any case. */
bool pip_services_field_contains(const json_t *record, const char *key,
                                 const char *needle);

#ifdef __cplusplus
}
#endif
#endif
