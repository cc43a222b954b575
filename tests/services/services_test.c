/*
 * The table of shipped services that pipnode looks names up in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <string.h>

#include "services.h"

static void
test_find_by_name(void **state)
{
    (void)state;
    assert_ptr_equal(pip_services_find("logging"), &pip_logging_service);
    assert_ptr_equal(pip_services_find("counters"), &pip_counters_service);
    assert_ptr_equal(pip_services_find("settings"), &pip_settings_service);
    assert_ptr_equal(pip_services_find("discovery"), &pip_discovery_service);
    assert_null(pip_services_find("Counters"));
    assert_null(pip_services_find(""));
    assert_null(pip_services_find(NULL));
}

static void
test_list_is_complete(void **state)
{
    size_t count = 0;

    (void)state;
    for (size_t i = 0; pip_services_all[i] != NULL; i++) {
        assert_ptr_equal(pip_services_find(pip_services_all[i]->name),
                         pip_services_all[i]);
        assert_string_equal(pip_services_all[i]->version, "1.0");
        count++;
    }
    assert_int_equal(count, 4);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_by_name),
        cmocka_unit_test(test_list_is_complete),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
