/*
 * The table of the services that ship with pip.
 */
#include "services.h"

#include <string.h>

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
