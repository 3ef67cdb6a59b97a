//! The Rhai engine rule packs run in: limited in operations, depth and sizes, with no
//! file, module or network access, and strict about variables so that a typo is a
//! load-time error rather than a silent `()` at run time.

use std::sync::{Arc, LazyLock};

use rhai::{Engine, OptimizationLevel};

/// Operations one script may run before it is stopped (a loop that never ends).
pub const MAX_OPERATIONS: u64 = 100_000;
/// Nested function calls allowed.
pub const MAX_CALL_LEVELS: usize = 32;
/// Longest string a script may build, in bytes.
pub const MAX_STRING_SIZE: usize = 64 * 1024;
/// Largest array or map a script may build.
pub const MAX_COLLECTION_SIZE: usize = 10_000;

/// The engine every rule set compiles and runs with. It holds no per-pack state
/// (scripts carry their own functions), so one is built per process: building it
/// registers Rhai's whole standard library, which used to dominate a small reload.
pub fn shared() -> Arc<Engine> {
    static SHARED: LazyLock<Arc<Engine>> = LazyLock::new(|| Arc::new(engine()));
    Arc::clone(&SHARED)
}

/// A new engine with pcsync's limits.
pub fn engine() -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_COLLECTION_SIZE)
        .set_max_map_size(MAX_COLLECTION_SIZE)
        .set_strict_variables(true)
        .set_optimization_level(OptimizationLevel::Simple);
    // `eval` would compile code at run time, outside the load-time checks.
    engine.disable_symbol("eval");
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_loop_is_stopped_by_the_operation_limit() {
        let engine = engine();
        let err = engine
            .eval::<i64>("let x = 0; loop { x += 1; }")
            .unwrap_err();
        assert!(
            matches!(*err, rhai::EvalAltResult::ErrorTooManyOperations(_)),
            "{err}"
        );
    }

    #[test]
    fn undefined_variables_fail_at_compile_time() {
        let engine = engine();
        let err = engine.compile_expression("dael.amount > 1").unwrap_err();
        assert!(matches!(*err.0, rhai::ParseErrorType::VariableUndefined(ref v) if v == "dael"));
    }

    #[test]
    fn eval_is_not_available() {
        let engine = engine();
        assert!(engine.compile("eval(\"1\")").is_err());
    }
}
