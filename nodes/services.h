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

#ifdef __cplusplus
}
#endif
#endif
