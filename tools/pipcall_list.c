/*
 * pipcall list: the live instances known to discovery, as a table or as
 * JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipcall.h"

/* Joins the strings of a JSON array with single spaces. */
static void
pipcall_join_urls(const json_t *urls, char *out, size_t out_len)
{
    size_t index;
    json_t *url;
    size_t used = 0;

    out[0] = '\0';
    if (json_is_string(urls)) {
        snprintf(out, out_len, "%s", json_string_value(urls));
        return;
    }
    json_array_foreach(urls, index, url) {
        int n;

        if (!json_is_string(url) || used >= out_len) {
            continue;
        }
        n = snprintf(out + used, out_len - used, "%s%s", used > 0 ? " " : "",
                     json_string_value(url));
        used += n > 0 ? (size_t)n : 0;
    }
}

/* Column texts of one instance, for the table of `list`. */
typedef struct pipcall_row {
    const char *cells[5];
    char rpc[512];
} pipcall_row;

static const char *
pipcall_field_text(const json_t *instance, const char *key)
{
    const char *text = json_string_value(json_object_get(instance, key));

    return text != NULL ? text : "-";
}

static void
pipcall_fill_row(pipcall_row *row, const json_t *instance)
{
    pipcall_join_urls(json_object_get(instance, "rpc"), row->rpc,
                      sizeof(row->rpc));
    row->cells[0] = pipcall_field_text(instance, "name");
    row->cells[1] = pipcall_field_text(instance, "version");
    row->cells[2] = pipcall_field_text(instance, "host");
    row->cells[3] = row->rpc[0] != '\0' ? row->rpc : "-";
    row->cells[4] = pipcall_field_text(instance, "pub");
}

static void
pipcall_print_row(const char *const cells[5], const int widths[5])
{
    for (int c = 0; c < 4; c++) {
        printf("%-*s  ", widths[c], cells[c]);
    }
    printf("%s\n", cells[4]);
}

static int
pipcall_print_table(const json_t *instances)
{
    static const char *const header[5] = {"SERVICE", "VERSION", "HOST", "RPC",
                                          "PUB"};
    size_t count = json_array_size(instances);
    pipcall_row *rows = calloc(count ? count : 1, sizeof(*rows));
    int widths[5];

    if (rows == NULL) {
        fprintf(stderr, "pipcall: Out of memory.\n");
        return PIPCALL_EXIT_FAILED;
    }
    for (int c = 0; c < 5; c++) {
        widths[c] = (int)strlen(header[c]);
    }
    for (size_t i = 0; i < count; i++) {
        pipcall_fill_row(&rows[i], json_array_get(instances, i));
        for (int c = 0; c < 5; c++) {
            int len = (int)strlen(rows[i].cells[c]);

            widths[c] = len > widths[c] ? len : widths[c];
        }
    }
    pipcall_print_row(header, widths);
    for (size_t i = 0; i < count; i++) {
        pipcall_print_row(rows[i].cells, widths);
    }
    free(rows);
    return 0;
}

int
pipcall_list_instances(const pipcall_options *opt, json_t **instances,
                       pip_error *err)
{
    json_t *result = NULL;
    int rv;

    rv = pipcall_invoke(opt, true, "discovery.list", NULL, &result, err);
    if (rv != PIP_OK) {
        return rv;
    }
    if (!json_is_array(result)) {
        json_decref(result);
        return pip_error_set(err, PIP_E_BAD_REQUEST, "INVALID_RESPONSE",
                             "Discovery returned something other than an "
                             "array of instances to discovery.list.");
    }
    *instances = result;
    return PIP_OK;
}

int
pipcall_run_list(const pipcall_options *opt)
{
    json_t *instances = NULL;
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pipcall_list_instances(opt, &instances, &err);
    if (rv != PIP_OK) {
        rv = pipcall_fail(opt, &err);
    } else if (opt->list_json) {
        pipcall_print_json(stdout, instances, opt->compact);
    } else {
        rv = pipcall_print_table(instances);
    }
    json_decref(instances);
    pip_error_fini(&err);
    return rv;
}
