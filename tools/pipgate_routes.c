/*
 * The route table of pipgate and the OpenAPI document built from it.
 *
 * Routes are not configured in the gateway: each service states its route
 * in its pip_service_def, and `<service>.describe` returns it.  The table
 * is rebuilt from discovery's list and one describe call per service.
 */
#include <stdio.h>
#include <string.h>

#include "pip/log.h"
#include "pip/time.h"
#include "pipgate.h"

/* A table older than this is rebuilt before the next lookup. */
#define PIPGATE_ROUTES_MAX_AGE_MS 5000
/* After a miss the table is rebuilt only if it is older than this, so a
 * client asking for unknown routes cannot drive discovery calls. */
#define PIPGATE_ROUTES_MISS_AGE_MS 500
/* Deadline of each discovery and describe call of a rebuild. */
#define PIPGATE_ROUTES_CALL_TIMEOUT_MS 2000

void
pipgate_routes_init(pipgate_routes *routes, pip_client *client)
{
    memset(routes, 0, sizeof(*routes));
    pthread_mutex_init(&routes->mutex, NULL);
    routes->client = client;
    routes->services = json_object();
    routes->by_route = json_object();
}

void
pipgate_routes_fini(pipgate_routes *routes)
{
    json_decref(routes->services);
    json_decref(routes->by_route);
    pthread_mutex_destroy(&routes->mutex);
}

/* A route is one or more segments of a-z, 0-9 and _, joined by '/'. */
static bool
pipgate_route_valid(const char *route)
{
    size_t len = strlen(route);

    if (len == 0 || len >= PIPGATE_NAME_MAX || route[0] == '/' ||
        route[len - 1] == '/' || strstr(route, "//") != NULL) {
        return false;
    }
    return strspn(route, "abcdefghijklmnopqrstuvwxyz0123456789_/") == len;
}

/*
 * Calls method with a short deadline.  Returns a new reference, or NULL
 * after logging the failure and copying its message to failure (may be
 * NULL, else PIP_MESSAGE_MAX bytes).
 */
static json_t *
pipgate_routes_call(pipgate_routes *routes, const char *method,
                    char *failure)
{
    pip_meta meta;
    json_t *result = NULL;
    pip_error err;

    memset(&meta, 0, sizeof(meta));
    meta.timeout_ms = PIPGATE_ROUTES_CALL_TIMEOUT_MS;
    pip_error_init(&err);
    if (pip_client_call(routes->client, method, NULL, &meta, &result,
                        &err) != PIP_OK) {
        pip_log(PIP_LOG_WARN, "pipgate", NULL, "%s failed: %s %s", method,
                err.code, err.message);
        if (failure != NULL) {
            snprintf(failure, PIP_MESSAGE_MAX, "%s", err.message);
        }
        result = NULL;
    }
    pip_error_fini(&err);
    return result;
}

/*
 * Adds service `name` to the new tables.  A service whose describe call
 * fails keeps its older entry, so one slow node does not remove its
 * routes from the gateway.
 */
static void
pipgate_routes_add(pipgate_routes *routes, const char *name,
                   json_t *services, json_t *by_route)
{
    char method[PIP_METHOD_MAX];
    json_t *describe;
    const char *route;

    snprintf(method, sizeof(method), "%s.describe", name);
    describe = pipgate_routes_call(routes, method, NULL);
    if (describe == NULL) {
        describe = json_incref(json_object_get(routes->services, name));
    }
    route = json_string_value(json_object_get(describe, "route"));
    if (route == NULL || !pipgate_route_valid(route)) {
        json_decref(describe);
        return;
    }
    if (json_object_get(by_route, route) != NULL) {
        pip_log(PIP_LOG_WARN, "pipgate", NULL,
                "route %s of service %s is already served by %s; ignored",
                route, name,
                json_string_value(json_object_get(by_route, route)));
        json_decref(describe);
        return;
    }
    json_object_set_new(services, name, describe);
    json_object_set_new(by_route, route, json_string(name));
}

/* Rebuilds the tables.  Called with the mutex held. */
static void
pipgate_routes_refresh(pipgate_routes *routes)
{
    json_t *instances =
        pipgate_routes_call(routes, "discovery.list", routes->list_failure);
    json_t *services = json_object();
    json_t *by_route = json_object();
    json_t *instance;
    size_t index;

    routes->refreshed_ms = pip_mono_ms();
    if (!json_is_array(instances) || services == NULL || by_route == NULL) {
        json_decref(instances);
        json_decref(services);
        json_decref(by_route);
        return; /* keep the old table while discovery is unreachable */
    }
    routes->list_failure[0] = '\0';
    json_array_foreach(instances, index, instance) {
        const char *name =
            json_string_value(json_object_get(instance, "name"));

        if (name != NULL && strlen(name) < PIPGATE_NAME_MAX &&
            json_object_get(services, name) == NULL) {
            pipgate_routes_add(routes, name, services, by_route);
        }
    }
    json_decref(instances);
    json_decref(routes->services);
    json_decref(routes->by_route);
    routes->services = services;
    routes->by_route = by_route;
}

static bool
pipgate_routes_lookup(pipgate_routes *routes, const char *route,
                      char *service)
{
    const char *name =
        json_string_value(json_object_get(routes->by_route, route));

    if (name == NULL) {
        return false;
    }
    snprintf(service, PIPGATE_NAME_MAX, "%s", name);
    return true;
}

/*
 * NOTE: a rebuild holds the mutex, so lookups wait for it.  A node that
 * does not reply to describe delays them by at most
 * PIPGATE_ROUTES_CALL_TIMEOUT_MS per service.
 */
void
pipgate_routes_update(pipgate_routes *routes)
{
    pthread_mutex_lock(&routes->mutex);
    if (routes->refreshed_ms == 0 ||
        pip_mono_ms() - routes->refreshed_ms > PIPGATE_ROUTES_MAX_AGE_MS) {
        pipgate_routes_refresh(routes);
    }
    pthread_mutex_unlock(&routes->mutex);
}

bool
pipgate_routes_find(pipgate_routes *routes, const char *route,
                    char *service, char *failure)
{
    int64_t age_ms;
    bool found;

    pthread_mutex_lock(&routes->mutex);
    age_ms = pip_mono_ms() - routes->refreshed_ms;
    if (routes->refreshed_ms == 0 || age_ms > PIPGATE_ROUTES_MAX_AGE_MS) {
        pipgate_routes_refresh(routes);
        age_ms = 0;
    }
    found = pipgate_routes_lookup(routes, route, service);
    if (!found && age_ms > PIPGATE_ROUTES_MISS_AGE_MS) {
        pipgate_routes_refresh(routes);
        found = pipgate_routes_lookup(routes, route, service);
    }
    snprintf(failure, PIP_MESSAGE_MAX, "%s", routes->list_failure);
    pthread_mutex_unlock(&routes->mutex);
    return found;
}

/* ---- OpenAPI ---- */

static json_t *pipgate_schema_of_field(const json_t *field);

/* Sets min and max of a field under the given JSON Schema keywords. */
static void
pipgate_schema_bounds(json_t *schema, const json_t *field,
                      const char *min_key, const char *max_key)
{
    json_t *min = json_object_get(field, "min");
    json_t *max = json_object_get(field, "max");

    if (json_is_number(min) && json_is_number(max)) {
        json_object_set(schema, min_key, min);
        json_object_set(schema, max_key, max);
    }
}

/* The object schema of a list of fields (an args array or `fields`). */
static json_t *
pipgate_schema_of_fields(const json_t *fields)
{
    json_t *schema = json_pack("{s:s, s:o, s:b}", "type", "object",
                               "properties", json_object(),
                               "additionalProperties", 1);
    json_t *required = json_array();
    json_t *properties = json_object_get(schema, "properties");
    const json_t *field;
    size_t index;

    json_array_foreach(fields, index, field) {
        const char *name = json_string_value(json_object_get(field, "name"));

        if (name == NULL) {
            continue;
        }
        json_object_set_new(properties, name, pipgate_schema_of_field(field));
        if (json_is_true(json_object_get(field, "required"))) {
            json_array_append_new(required, json_string(name));
        }
    }
    if (json_array_size(required) > 0) {
        json_object_set_new(schema, "required", required);
    } else {
        json_decref(required);
    }
    return schema;
}

static json_t *
pipgate_schema_paging(void)
{
    return json_pack("{s:s, s:{s:{s:s, s:i}, s:{s:s, s:i}, s:{s:s}}}",
                     "type", "object", "properties", "skip", "type",
                     "integer", "minimum", 0, "take", "type", "integer",
                     "minimum", 0, "total", "type", "boolean");
}

/* Maps one field of describe's output to a JSON Schema (OpenAPI 3.0). */
static json_t *
pipgate_schema_of_field(const json_t *field)
{
    const char *type = json_string_value(json_object_get(field, "type"));
    const char *doc = json_string_value(json_object_get(field, "doc"));
    json_t *schema;

    type = type != NULL ? type : "any";
    if (strcmp(type, "string") == 0) {
        schema = json_pack("{s:s}", "type", "string");
        pipgate_schema_bounds(schema, field, "minLength", "maxLength");
    } else if (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0) {
        schema = json_pack("{s:s}", "type", type);
        pipgate_schema_bounds(schema, field, "minimum", "maximum");
    } else if (strcmp(type, "boolean") == 0) {
        schema = json_pack("{s:s}", "type", "boolean");
    } else if (strcmp(type, "datetime") == 0) {
        schema = json_pack("{s:s, s:s}", "type", "string", "format",
                           "date-time");
    } else if (strcmp(type, "object") == 0 &&
               json_is_array(json_object_get(field, "fields"))) {
        schema = pipgate_schema_of_fields(json_object_get(field, "fields"));
        pipgate_schema_bounds(schema, field, "minProperties",
                              "maxProperties");
    } else if (strcmp(type, "array") == 0) {
        json_t *items = json_object_get(field, "items");

        schema = json_pack("{s:s, s:o}", "type", "array", "items",
                           items ? pipgate_schema_of_field(items)
                                 : json_object());
        pipgate_schema_bounds(schema, field, "minItems", "maxItems");
    } else if (strcmp(type, "paging") == 0) {
        schema = pipgate_schema_paging();
    } else if (strcmp(type, "object") == 0 || strcmp(type, "map") == 0 ||
               strcmp(type, "filter") == 0) {
        schema = json_pack("{s:s, s:b}", "type", "object",
                           "additionalProperties", 1);
        pipgate_schema_bounds(schema, field, "minProperties",
                              "maxProperties");
    } else {
        schema = json_object(); /* any value */
    }
    if (schema != NULL && doc != NULL) {
        json_object_set_new(schema, "description", json_string(doc));
    }
    return schema;
}

static json_t *
pipgate_openapi_error_ref(void)
{
    return json_pack("{s:s, s:{s:{s:{s:s}}}}", "description",
                     "the error description", "content", "application/json",
                     "schema", "$ref", "#/components/schemas/ErrorDescription");
}

/* The correlation id parameters: from the query, or from a header. */
static json_t *
pipgate_openapi_parameters(void)
{
    return json_pack(
        "[{s:s, s:s, s:b, s:s, s:{s:s, s:i}}, "
        "{s:s, s:s, s:b, s:s, s:{s:s, s:i}}]",
        "name", "correlation_id", "in", "query", "required", 0,
        "description", "trace id passed on to the service", "schema",
        "type", "string", "maxLength", PIP_CORRELATION_ID_MAX - 1, "name",
        "correlation_id", "in", "header", "required", 0, "description",
        "trace id, read when the query has none", "schema", "type", "string",
        "maxLength", PIP_CORRELATION_ID_MAX - 1);
}

/* The POST operation of one command. */
static json_t *
pipgate_openapi_command(const char *service, const json_t *command)
{
    const char *name = json_string_value(json_object_get(command, "name"));
    const char *doc = json_string_value(json_object_get(command, "doc"));
    const char *result =
        json_string_value(json_object_get(command, "result"));
    char operation_id[2 * PIPGATE_NAME_MAX];

    snprintf(operation_id, sizeof(operation_id), "%s.%s", service, name);
    return json_pack(
        "{s:{s:s, s:[s], s:s, s:o, s:{s:b, s:{s:{s:o}}}, "
        "s:{s:{s:s, s:{s:{s:{}}}}, s:{s:s}, s:o}}}",
        "post", "operationId", operation_id, "tags", service, "summary",
        doc ? doc : "", "parameters", pipgate_openapi_parameters(),
        "requestBody", "required", 0, "content", "application/json",
        "schema",
        pipgate_schema_of_fields(json_object_get(command, "args")),
        "responses", "200", "description", result ? result : "the result",
        "content", "application/json", "schema", "204", "description",
        "the command returned no result (null)", "default",
        pipgate_openapi_error_ref());
}

/* The GET operation of describe, which reads without side effects. */
static json_t *
pipgate_openapi_describe_get(const char *service)
{
    char operation_id[PIPGATE_NAME_MAX + 16];

    snprintf(operation_id, sizeof(operation_id), "%s.describe.get", service);
    return json_pack("{s:s, s:[s], s:s, s:o, s:{s:{s:s}, s:o}}",
                     "operationId", operation_id, "tags", service,
                     "summary",
                     "The command table of the service with argument "
                     "schemas.",
                     "parameters", pipgate_openapi_parameters(),
                     "responses", "200", "description",
                     "name, version, route, doc, commands, config, events",
                     "default", pipgate_openapi_error_ref());
}

/* Adds the paths of one service: each command, and GET describe. */
static void
pipgate_openapi_service(json_t *paths, const char *service,
                        const json_t *describe)
{
    const char *route = json_string_value(json_object_get(describe, "route"));
    const json_t *command;
    char path[2 * PIPGATE_NAME_MAX + 2];
    size_t index;

    json_array_foreach(json_object_get(describe, "commands"), index,
                       command) {
        const char *name =
            json_string_value(json_object_get(command, "name"));

        if (name == NULL) {
            continue;
        }
        snprintf(path, sizeof(path), "/%s/%s", route, name);
        json_object_set_new(paths, path,
                            pipgate_openapi_command(service, command));
        if (strcmp(name, "describe") == 0) {
            json_object_set_new(json_object_get(paths, path), "get",
                                pipgate_openapi_describe_get(service));
        }
    }
}

static json_t *
pipgate_openapi_components(bool bearer)
{
    json_t *components = json_pack(
        "{s:{s:{s:s, s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
        "s:{s:s, s:b}, s:{s:s, s:b}, s:{}, s:{}}}}}",
        "schemas", "ErrorDescription", "type", "object", "properties",
        "type", "type", "string", "category", "type", "string", "code",
        "type", "string", "status", "type", "integer", "message", "type",
        "string", "details", "type", "object", "nullable", 1,
        "correlation_id", "type", "string", "nullable", 1, "cause",
        "stack_trace");

    if (components != NULL && bearer) {
        json_object_set_new(components, "securitySchemes",
                            json_pack("{s:{s:s, s:s}}", "bearer", "type",
                                      "http", "scheme", "bearer"));
    }
    return components;
}

/* GET /health and GET /openapi.json. */
static void
pipgate_openapi_gateway_paths(json_t *paths)
{
    json_object_set_new(
        paths, "/health",
        json_pack("{s:{s:s, s:s, s:[], s:{s:{s:s}}}}", "get", "operationId",
                  "health", "summary",
                  "Reports that the gateway runs; needs no token.",
                  "security", "responses", "200", "description",
                  "{status, uptime_ms, in_flight, served}"));
    json_object_set_new(
        paths, "/openapi.json",
        json_pack("{s:{s:s, s:s, s:{s:{s:s}}}}", "get", "operationId",
                  "openapi", "summary",
                  "This document, built from the command tables.",
                  "responses", "200", "description",
                  "an OpenAPI 3 document"));
}

json_t *
pipgate_openapi(pipgate_routes *routes, const char *server_url, bool bearer)
{
    json_t *doc;
    json_t *paths = json_object();
    const char *name;
    json_t *describe;

    pipgate_openapi_gateway_paths(paths);
    pthread_mutex_lock(&routes->mutex);
    json_object_foreach(routes->services, name, describe) {
        pipgate_openapi_service(paths, name, describe);
    }
    pthread_mutex_unlock(&routes->mutex);

    doc = json_pack("{s:s, s:{s:s, s:s, s:s}, s:[{s:s}], s:o, s:o}",
                    "openapi", "3.0.3", "info", "title", "pip services",
                    "version", "1.0", "description",
                    "Every command of the services registered with "
                    "discovery, as POST /<route>/<command> with a JSON "
                    "object of named arguments.",
                    "servers", "url", server_url, "paths", paths,
                    "components", pipgate_openapi_components(bearer));
    if (doc != NULL && bearer) {
        json_object_set_new(doc, "security", json_pack("[{s:[]}]", "bearer"));
    }
    return doc;
}
