<?php
// PHPUnit's bootstrap: stands in for WHMCS around the module (its constant, logModuleCall, the
// database facade, the UsageBilling classes, lib/'s autoloading), and turns every PHP notice,
// warning and deprecation into an exception, so a test that meets one fails.

error_reporting(E_ALL);
ini_set('display_errors', '1');
set_error_handler(function (int $level, string $message, string $file, int $line): bool {
    throw new ErrorException($message, 0, $level, $file, $line);
});

if (!defined('WHMCS')) {
    define('WHMCS', true);
}

const HOSTWRIGHT_MODULE_DIR = __DIR__ . '/../modules/servers/hostwright';

// WHMCS autoloads a module's lib/ as WHMCS\Module\Server\<Module>\
spl_autoload_register(function (string $class): void {
    $prefix = 'WHMCS\\Module\\Server\\Hostwright\\';
    if (strncmp($class, $prefix, strlen($prefix)) === 0) {
        $file = HOSTWRIGHT_MODULE_DIR . '/lib/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

require __DIR__ . '/stubs/UsageBilling.php';
require __DIR__ . '/stubs/Database.php';

/** Every logModuleCall of the test under way, as WHMCS's module log would keep it. */
$GLOBALS['hostwright_module_log'] = [];

function logModuleCall($module, $action, $request, $response, $data = '', $variablesToMask = [])
{
    $GLOBALS['hostwright_module_log'][] = [
        'module' => $module,
        'action' => $action,
        'request' => $request,
        'response' => $response,
        'data' => $data,
        'mask' => $variablesToMask,
    ];
}

require HOSTWRIGHT_MODULE_DIR . '/hostwright.php';
require __DIR__ . '/GatewayTestCase.php';
