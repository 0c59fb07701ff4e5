<?php

use WHMCS\Database\Capsule;
use WHMCS\Module\Server\Hostwright\PendingCalls;

/** CreateAccount and the lifecycle functions against a running hostwright. */
class LifecycleTest extends GatewayTestCase
{
    public function testCreateAccountRecordsTheOrderAndHostwrightBuildsIt(): void
    {
        $params = $this->params(5001);
        self::assertSame('success', hostwright_CreateAccount($params));

        $service = $this->service(5001);
        self::assertSame('provisioning', $service['status']); // answered at once, built later
        self::assertSame('unified', $service['mode']);
        self::assertSame('whmcs5001.example.org', $service['domain']);
        self::assertSame('77', $service['client_id']);
        self::assertSame('wh5001', $service['username']);
        self::assertSame('whmcs-e2e', $service['plan']['package']);
        self::assertSame(1000, $service['plan']['disk_mb']);
        self::assertSame(5000, $service['plan']['bandwidth_mb']);
        self::assertSame(10, $service['plan']['mail_accounts']);
        self::assertNull($service['plan']['web_domains']); // empty: unlimited
        $this->waitForStatus(5001, 'active');

        // WHMCS calling it again (a retry, an admin's second click): one order recorded
        self::assertSame('success', hostwright_CreateAccount($params));
        self::assertSame(1, $this->commandsRecorded(5001, 'create'));
        $ordered = array_filter($this->hostwright()->get('/v1/services/5001/events', [], 'test')['events'], function ($event) {
            return $event['topic'] === 'Service.Ordered';
        });
        self::assertCount(1, $ordered);
    }

    public function testARetriedCallRecordsOneCommandAndANewCallAnother(): void
    {
        $params = $this->params(5002);
        self::assertSame('success', hostwright_CreateAccount($params));

        // attempt 1: the gateway cannot be reached; the call's key stays pending
        $said = hostwright_SyncUsage($this->paramsOfClosedGateway(5002));
        self::assertStringContainsString('cannot be reached', $said);
        self::assertCount(1, Capsule::table(PendingCalls::TABLE)->get());
        // attempt 2 reaches hostwright, which records it, and its answer is lost on the way back
        $key = (new PendingCalls())->keyFor('5002', 'sync-usage', []);
        $this->hostwright()->post('/v1/services/5002/sync-usage', [], $key, 'test');
        self::assertSame(1, $this->commandsRecorded(5002, 'sync-usage'));
        // WHMCS retries the same call: hostwright knows its key and records nothing more
        self::assertSame('success', hostwright_SyncUsage($params));
        self::assertSame(1, $this->commandsRecorded(5002, 'sync-usage'));
        self::assertCount(0, Capsule::table(PendingCalls::TABLE)->get());
        // a genuinely new call of the same kind later on is recorded
        self::assertSame('success', hostwright_SyncUsage($params));
        self::assertSame(2, $this->commandsRecorded(5002, 'sync-usage'));
    }

    public function testSuspendUnsuspendAndSuspendAgainAreEachRecorded(): void
    {
        $params = $this->activeService(5003);
        self::assertSame('success', hostwright_SuspendAccount($params + ['suspendreason' => 'Overdue on payment']));
        $this->waitForStatus(5003, 'suspended');
        self::assertSame('success', hostwright_SuspendAccount($params)); // satisfied already
        self::assertSame(1, $this->commandsRecorded(5003, 'suspend'));

        self::assertSame('success', hostwright_UnsuspendAccount($params));
        $this->waitForStatus(5003, 'active');
        // the next overdue invoice a month later: a new suspend, not the first one again
        self::assertSame('success', hostwright_SuspendAccount($params));
        $this->waitForStatus(5003, 'suspended');
        self::assertSame(2, $this->commandsRecorded(5003, 'suspend'));

        // a suspended service refuses a redeploy: WHMCS shows why
        self::assertStringContainsString('unsuspend it before redeploy', hostwright_Redeploy($params));
    }

    public function testChangePackageSendsTheNewPlan(): void
    {
        $params = $this->activeService(5004);
        $bigger = array_replace($params, ['configoption3' => '2000', 'configoption9' => 'unlimited']);
        self::assertSame('success', hostwright_ChangePackage($bigger));
        self::assertSame('success', hostwright_ChangePackage($bigger));
        self::assertSame(1, $this->commandsRecorded(5004, 'change-plan'));
        $this->waitUntil(function () { // the read shows the plan once the views have it
            $service = $this->service(5004);
            return $service['plan']['disk_mb'] === 2000 && $service['operation'] === null;
        }, 60, 'the plan change to be applied');
        self::assertNull($this->service(5004)['plan']['databases']);
        self::assertNull($this->service(5004)['last_error']);

        $refused = hostwright_ChangePackage(array_replace($params, ['configoption3' => 'lots']));
        self::assertStringContainsString('plan.disk_mb must be a whole number', $refused);
    }

    public function testCustomButtonsAndTerminate(): void
    {
        $params = $this->activeService(5005);
        self::assertSame('success', hostwright_VerifyRepair($params));
        self::assertSame(1, $this->commandsRecorded(5005, 'verify-repair'));
        self::assertSame('success', hostwright_Redeploy($params));
        self::assertSame('success', hostwright_FactoryReset($params));
        self::assertSame('success', hostwright_SyncNow($params));
        self::assertSame(1, $this->commandsRecorded(5005, 'redeploy'));
        self::assertSame(1, $this->commandsRecorded(5005, 'factory-reset'));
        self::assertSame(1, $this->commandsRecorded(5005, 'sync-usage'));
        // this hostwright runs without automatic SSL: no certificate to issue, said so
        self::assertSame('hostwright has no certificate to issue for this service yet', hostwright_IssueSsl($params));
        $this->waitForStatus(5005, 'active');

        self::assertSame('success', hostwright_TerminateAccount($params));
        $this->waitForStatus(5005, 'terminated');
        self::assertSame('success', hostwright_TerminateAccount($params)); // nothing more to do
        self::assertStringContainsString('is terminated', hostwright_SuspendAccount($params));
    }

    public function testAnInvalidDomainIsRefusedReadablyAndNothingRecorded(): void
    {
        $said = hostwright_CreateAccount($this->params(5006, ['domain' => 'not a domain!']));
        self::assertStringStartsWith('hostwright refused the values: ', $said);
        self::assertStringContainsString('domain', $said);
        $latin1 = hostwright_CreateAccount($this->params(5006, ['domain' => "caf\xe9.example.org"]));
        self::assertStringStartsWith('the call to hostwright cannot be sent: a value in it is not UTF-8 text', $latin1);
        try {
            $this->service(5006);
            self::fail('a refused order was recorded');
        } catch (\WHMCS\Module\Server\Hostwright\GatewayError $error) {
            self::assertSame(404, $error->status());
        }
    }

    public function testATakenVanityLabelIsRefusedReadably(): void
    {
        $vanity = [
            'configoption1' => 'vanity',
            'configoption14' => self::env('VANITY_DOMAIN'),
            'domain' => '',
            'username' => '',
            'customfields' => ['Vanity label' => 'blog5007'],
        ];
        self::assertSame('success', hostwright_CreateAccount($this->params(5007, $vanity)));
        self::assertSame('blog5007.' . self::env('VANITY_DOMAIN'), $this->service(5007)['domain']);

        $said = hostwright_CreateAccount($this->params(5008, $vanity));
        self::assertStringStartsWith('hostwright refused it: ', $said);
        self::assertStringContainsString('the label blog5007 is already in use by service 5007', $said);

        $unlabelled = hostwright_CreateAccount($this->params(5009, array_replace($vanity, ['customfields' => []])));
        self::assertSame('a vanity order needs its label: the product custom field "Vanity label" is empty', $unlabelled);
    }

    public function testAGatewayThatCannotBeReachedIsAReadableErrorWithinTheTimeout(): void
    {
        $started = microtime(true);
        $said = hostwright_CreateAccount($this->paramsOfClosedGateway(5010));
        self::assertLessThan(5, microtime(true) - $started);
        self::assertStringStartsWith('hostwright at http://', $said);
        self::assertStringContainsString('cannot be reached', $said);
        self::assertSame(
            "hostwright at http://127.0.0.1:" . self::env('CLOSED_PORT') . " cannot be reached",
            substr($said, 0, strlen("hostwright at http://127.0.0.1:" . self::env('CLOSED_PORT') . " cannot be reached"))
        );
    }

    public function testAGatewayThatDoesNotAnswerIsAReadableErrorAfterTheTimeout(): void
    {
        $silent = stream_socket_server('tcp://127.0.0.1:0'); // accepts connections, never answers
        self::assertNotFalse($silent);
        $port = (int) substr(strrchr(stream_socket_get_name($silent, false), ':'), 1);
        try {
            $started = microtime(true);
            $said = hostwright_SuspendAccount($this->params(5011, ['serverport' => (string) $port]));
            $took = microtime(true) - $started;
        } finally {
            fclose($silent);
        }
        self::assertSame("hostwright at http://127.0.0.1:{$port} did not answer within 10 s: try again later", $said);
        self::assertGreaterThanOrEqual(9, $took);
        self::assertLessThan(15, $took);
    }
}
