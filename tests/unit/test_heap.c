/* test_heap.c -- the position-tracking binary heap against a sorted model. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "../../src/engine/heap.h"

struct item {
    int key;
    size_t pos;
};

static int less(const void *a, const void *b)
{
    return ((const struct item *)a)->key < ((const struct item *)b)->key;
}

static void setpos(void *x, size_t pos) { ((struct item *)x)->pos = pos; }

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

TestSuite(heap, .timeout = 10);

Test(heap, pops_in_ascending_order)
{
    struct heap h;
    heap_init(&h, less, setpos);
    enum { N = 1000 };
    static struct item it[N];
    for (int i = 0; i < N; i++) {
        it[i].key = (i * 7919) % N;
        cr_assert_eq(heap_insert(&h, &it[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        struct item *x = heap_remove(&h, 0);
        cr_assert_eq(x->key, i);
    }
    cr_assert_null(heap_peek(&h));
    heap_destroy(&h);
}

Test(heap, removes_any_item_by_its_position_and_fixes_changed_keys)
{
    struct heap h;
    heap_init(&h, less, setpos);
    enum { N = 500 };
    static struct item it[N];
    static bool in[N];
    unsigned seed = 1;
    for (int i = 0; i < N; i++) {
        it[i].key = rand_r(&seed) % 1000;
        heap_insert(&h, &it[i]);
        in[i] = true;
    }
    for (int round = 0; round < 2000; round++) {
        int i = rand_r(&seed) % N;
        if (in[i] && round % 3 == 0) {
            cr_assert_eq(h.items[it[i].pos], &it[i], "position is tracked");
            heap_remove(&h, it[i].pos);
            in[i] = false;
        } else if (in[i]) {
            it[i].key = rand_r(&seed) % 1000;
            heap_fix(&h, it[i].pos);
        } else {
            heap_insert(&h, &it[i]);
            in[i] = true;
        }
    }
    int keys[N], n = 0;
    for (int i = 0; i < N; i++)
        if (in[i])
            keys[n++] = it[i].key;
    qsort(keys, (size_t)n, sizeof keys[0], cmp_int);
    cr_assert_eq((int)h.len, n);
    for (int i = 0; i < n; i++) {
        struct item *x = heap_remove(&h, 0);
        cr_assert_eq(x->key, keys[i]);
    }
    heap_destroy(&h);
}
